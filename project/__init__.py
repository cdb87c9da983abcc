"""Tollgate: JSON Schema validation sold as an API, metered per key on Redis."""

__version__ = "0.1.0"
