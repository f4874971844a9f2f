"""Webhooks: signed, retried, durable notices of what happened in the shop's Vitrine."""
