"""Messaging: LINE, e-mail, SMS and outgoing webhooks through a transactional outbox."""
