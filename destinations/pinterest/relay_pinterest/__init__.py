"""Relay destination for the Pinterest Conversions API (v5)."""
