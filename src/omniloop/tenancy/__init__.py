"""Brands (tenants), their stores, staff, API keys and the audit log of who changed what."""
