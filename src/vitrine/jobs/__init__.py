"""Bulk and background jobs: catalog import."""
