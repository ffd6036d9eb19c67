"""omniloop: one customer across online and in-store, and the marketing loop between them."""

__version__ = "0.1.0"
