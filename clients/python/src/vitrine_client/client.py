"""The clients: :class:`Client` (sync) and :class:`AsyncClient`, each with one method per
operation of the service's /v1 API."""

from __future__ import annotations

from vitrine_client.operation import AsyncSession, SyncSession
from vitrine_client.operations.ads import AdOperations
from vitrine_client.operations.classification import ClassificationOperations
from vitrine_client.operations.products import ProductOperations
from vitrine_client.operations.recommendations import RecommendationOperations
from vitrine_client.operations.search import SearchOperations
from vitrine_client.operations.webhooks import WebhookOperations


class Client(
    SyncSession,
    ProductOperations,
    SearchOperations,
    RecommendationOperations,
    ClassificationOperations,
    AdOperations,
    WebhookOperations,
):
    """The Vitrine API over a blocking ``httpx.Client``.

    ``Client(base_url, api_key, timeout=60.0, transport=None, headers=None)``; use it in
    a ``with`` block or call ``close()``. Every method raises a
    :class:`~vitrine_client.errors.VitrineError` subclass on an error status.
    """


class AsyncClient(
    AsyncSession,
    ProductOperations,
    SearchOperations,
    RecommendationOperations,
    ClassificationOperations,
    AdOperations,
    WebhookOperations,
):
    """The Vitrine API over an ``httpx.AsyncClient``: the same methods as
    :class:`Client`, awaited. Use it in an ``async with`` block or call ``aclose()``."""
