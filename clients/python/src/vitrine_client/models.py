"""The service's response documents as pydantic models (the OpenAPI schemas' names).

Every model accepts members it does not declare (kept as extra attributes), so that a
newer service answering more fields does not break an older client.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    """The base of every response model: unknown members are kept, not refused."""

    model_config = ConfigDict(extra="allow")


# -- products --------------------------------------------------------------------------------


class NamedColor(Model):
    name: str
    share: float
    lab: list[float]
    hex: str


class Label(Model):
    name: str
    confidence: float


class Image(Model):
    id: int
    content_hash: str
    format: str
    width: int
    height: int
    bytes: int
    is_primary: bool
    url: str


class Product(Model):
    id: str
    title: str | None = None
    description: str | None = None
    price: float | None = None
    available: bool = True
    attributes: dict[str, Any] = Field(default_factory=dict)
    images: list[Image] = Field(default_factory=list)
    colors: list[NamedColor] = Field(default_factory=list)
    labels: list[Label] = Field(default_factory=list)
    categories: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Analysis(Model):
    """The full analysis of one photo: colours, texture, shape, pattern, labels..."""

    image: dict[str, Any]
    colors: dict[str, Any] | None
    texture: dict[str, Any] | None
    shape: dict[str, Any] | None
    pattern: dict[str, Any] | None
    foreground: dict[str, Any]
    labels: list[Label]
    embedding: dict[str, Any]
    feature_version: str
    vector_dims: dict[str, int]
    categories: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)


class ProductCreated(Model):
    product: Product
    analysis: list[Analysis]


class ProductPage(Model):
    items: list[Product]
    next_cursor: str | None = None


# -- search ----------------------------------------------------------------------------------


class SearchHit(Model):
    product_id: str
    score: float
    title: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class SearchResults(Model):
    results: list[SearchHit]
    took_ms: float


class SceneMatch(Model):
    id: str
    score: float
    title: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class SceneObject(Model):
    """A product found in a photo: its box ``[x0, y0, x1, y1]``, score and matches."""

    box: list[int]
    score: float
    category: str | None = None
    results: list[SceneMatch]


class SceneResults(Model):
    objects: list[SceneObject]
    took_ms: float


class LocalizerStatus(Model):
    trained: bool
    version: str | None = None
    trained_at: str | None = None
    catalog_products: int | None = None
    cutouts: int | None = None
    scenes: int | None = None
    train_seconds: float | None = None
    evaluation: dict[str, float] = Field(default_factory=dict)


# -- imports and jobs ------------------------------------------------------------------------


class ImportJob(Model):
    id: str
    status: str
    total: int
    processed: int
    imported: int
    skipped: int
    rejected: int
    rejects: list[dict[str, Any]]
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


JobKind = Literal[
    "label_catalog",
    "train_classifier",
    "train_recommendations",
    "evaluate_recommendations",
    "finetune_cnn",
    "switch_cnn",
    "train_localizer",
]


class Job(Model):
    """A background job: what it does, how far it is, and what it found."""

    id: int
    kind: str
    state: str
    stage: str | None = None
    done: int
    total: int
    params: dict[str, Any]
    result: dict[str, Any] | None = None
    error: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    url: str


class JobList(Model):
    jobs: list[Job]


# -- classification --------------------------------------------------------------------------


class ModelSummary(Model):
    id: int
    field: str
    kind: str
    version: str
    active: bool
    algorithm: str
    feature_groups: list[str]
    embedding_version: str
    train_size: int
    validation_size: int
    corrections_used: int
    trigger: str
    accuracy: float | None = None
    macro_f1: float | None = None
    review_threshold: float | None = None
    comparison: dict[str, Any] | None = None
    created_at: datetime | None = None
    activated_at: datetime | None = None


class ModelDetail(ModelSummary):
    metrics: dict[str, Any]
    params: dict[str, Any]


class ModelList(Model):
    models: list[ModelSummary]


class FeedbackSaved(Model):
    product_id: str
    field: str
    value: str
    source: str
    categories: dict[str, dict[str, Any]]


class CnnVersion(Model):
    version: str
    base_version: str | None = None
    created_at: str | None = None
    method: str | None = None
    input_size: int | None = None
    device: str | None = None
    train_seconds: float | None = None
    stopped: str | None = None
    products: int | None = None
    fields: list[str]
    evaluation_accuracy: dict[str, float]
    in_service: bool


class CnnVersions(Model):
    in_service: str
    versions: list[CnnVersion]


# -- recommendations -------------------------------------------------------------------------


class EventsAccepted(Model):
    accepted: int
    duplicates: int


class Recommended(Model):
    product_id: str
    rank: int
    score: float
    source: str
    title: str | None = None
    explanation: dict[str, Any]


class Recommendations(Model):
    """A recommendation list; quote ``recommendation_id`` in the events it leads to."""

    recommendation_id: str
    strategy: str
    user_id: str | None = None
    items: list[Recommended]
    fallback_used: bool
    took_ms: float
    unknown_products: list[str] | None = None


class Strategy(Model):
    name: str
    description: str = ""
    algorithm: str = "hybrid"
    params: dict[str, Any] = Field(default_factory=dict)
    weights: dict[str, float] = Field(default_factory=dict)
    rules: dict[str, Any] = Field(default_factory=dict)
    fallback: list[str] = Field(default_factory=list)
    variants: dict[str, float] = Field(default_factory=dict)
    paused: bool = False


class RecommendationStatus(Model):
    ready: bool
    trained_at: datetime | None = None
    algorithms: dict[str, float] | None = None
    products: int | None = None
    customers: int | None = None
    events: int | None = None
    events_skipped: int | None = None
    lists: dict[str, Any] | None = None
    error: str | None = None


class TrainingRequested(Model):
    status: str
    job: Job


class StrategyStats(Model):
    strategy: str
    served: int
    clicked_lists: int
    converted_lists: int = 0
    events: dict[str, int]
    ctr: float | None
    conversion: float | None


class EvaluationRun(Model):
    id: int
    split_date: datetime
    k: int
    params: dict[str, Any]
    results: list[Any]
    created_at: datetime | None = None


# -- visual search ads -----------------------------------------------------------------------


class Campaign(Model):
    name: str
    description: str | None = None
    active: bool
    category_field: str
    categories: list[str] = Field(default_factory=list)
    min_price: float | None = None
    max_price: float | None = None
    max_per_object: int
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Ad(Model):
    ad_id: str
    product_id: str
    score: float
    title: str | None = None
    price: float | None = None
    link: str | None = None
    image_link: str | None = None


class AdObject(Model):
    box: list[int]
    score: float
    category: str | None = None
    ads: list[Ad] = Field(default_factory=list)


class AdMatch(Model):
    campaign: str
    source: str
    localized: bool
    objects: list[AdObject] = Field(default_factory=list)


class Funnel(Model):
    impressions: int
    clicks: int
    carts: int
    purchases: int
    revenue: float
    ctr: float | None = None
    conversion: float | None = None
    last_served: datetime | None = None


class CampaignFunnel(Funnel):
    campaign: str


class SourceFunnel(Funnel):
    source: str
    label: str | None = None
    campaigns: int


class AdAnalytics(Model):
    campaigns: list[CampaignFunnel] = Field(default_factory=list)
    sources: list[SourceFunnel] = Field(default_factory=list)


# -- webhooks --------------------------------------------------------------------------------


class DeliveryCounts(Model):
    pending: int
    delivered: int
    failed: int


class Webhook(Model):
    id: int
    url: str
    events: list[str]
    active: bool
    description: str | None = None
    deliveries: DeliveryCounts
    created_at: datetime
    updated_at: datetime


class WebhookCreated(Webhook):
    """A new subscription: ``secret`` (``whsec_...``) signs its deliveries; shown once."""

    secret: str


class Delivery(Model):
    id: int
    subscription_id: int
    event_id: str
    event: str
    payload: dict[str, Any] = Field(default_factory=dict)
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None


# -- storefront ------------------------------------------------------------------------------


class Card(Model):
    id: str
    title: str
    price: float | None = None
    currency: str
    available: bool
    image: str | None = None
    link: str | None = None


class Cards(Model):
    cards: list[Card] = Field(default_factory=list)
