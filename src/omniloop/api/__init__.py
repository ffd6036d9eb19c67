"""The /api/v1 router and what every API route depends on."""
