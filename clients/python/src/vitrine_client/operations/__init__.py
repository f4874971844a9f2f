"""The service's /v1 operations, grouped as the OpenAPI document's tags group them; each
group is a mixin of both clients."""
