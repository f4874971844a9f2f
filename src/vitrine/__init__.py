"""Vitrine: self-hosted visual intelligence for e-commerce catalogs."""

__version__ = "0.1.0"
