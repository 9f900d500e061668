"""Relay: a Shopify store's conversions, sent to ad platforms server-side."""

__version__ = "0.1.0"
