"""A typed client for the Vitrine API: ``Client`` (sync) and ``AsyncClient``, response
models, and errors carrying the service's problem documents."""

from vitrine_client.bodies import Event, StrategyConfig
from vitrine_client.calls import UNSET
from vitrine_client.client import AsyncClient, Client
from vitrine_client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    ValidationFailed,
    VitrineError,
)
from vitrine_client.operation import OPERATIONS

__all__ = [
    "OPERATIONS",
    "UNSET",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Event",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "StrategyConfig",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "ValidationFailed",
    "VitrineError",
]
__version__ = "0.1.0"
