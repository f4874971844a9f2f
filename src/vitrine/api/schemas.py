"""The API's request and response models (pydantic)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from vitrine.api.openapi import UTCDateTime


def _not_boolean(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic's lax mode would read true as 1
        raise ValueError("a number is expected, not true/false")
    return value


# For an int or float read from JSON: 5 or 5.0 (as JSON Schema has it), never true/false.
# It goes after the field's constraints (Annotated[int, Field(ge=1), NotBoolean]), or
# pydantic would not write them into the OpenAPI document as minimum/maximum.
NotBoolean = BeforeValidator(_not_boolean)
FieldName = Annotated[str, Field(min_length=1, max_length=128)]


class NamedColor(BaseModel):
    name: str
    share: float
    lab: list[float]
    hex: str


class LabelOut(BaseModel):
    name: str
    confidence: float


class ImageOut(BaseModel):
    id: int
    content_hash: str
    format: str
    width: int
    height: int
    bytes: int
    is_primary: bool
    url: str


class ProductOut(BaseModel):
    id: str
    title: str | None = None
    description: str | None = None
    price: float | None = None
    available: bool = True
    attributes: dict[str, Any] = Field(default_factory=dict)
    images: list[ImageOut] = Field(default_factory=list)
    colors: list[NamedColor] = Field(default_factory=list)
    labels: list[LabelOut] = Field(default_factory=list)
    categories: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Label fields: the winning value (human over model), source, confidence.",
    )
    tags: dict[str, Any] = Field(
        default_factory=dict, description="Named colours, ImageNet labels, tag models (pattern)."
    )
    created_at: UTCDateTime | None = None
    updated_at: UTCDateTime | None = None


def _not_nullable(schema: dict[str, Any]) -> None:
    """An optional field that must not be null: no ``"default": null`` in the schema."""
    schema.pop("default", None)


class ProductPatch(BaseModel):
    """Fields to change; attributes are merged (a null value removes the attribute).

    ``title``, ``description`` and ``price`` may be cleared with null; ``available`` and
    ``attributes`` may not (a null for them is a 422 naming the field).
    """

    model_config = {"extra": "forbid"}

    title: str | None = Field(default=None, max_length=512)
    description: str | None = None
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True)
    # Typed without None (the columns are NOT NULL); the None default only means "unset".
    # strict (here and for price): a JSON boolean, not 0/1; a JSON number, not false
    available: bool = Field(default=None, strict=True, json_schema_extra=_not_nullable)  # type: ignore[assignment]
    attributes: dict[str, Any] = Field(  # type: ignore[assignment]
        default=None,
        json_schema_extra=_not_nullable,
        description="Merged into the product's attributes; a null value removes that key.",
    )


class ProductPage(BaseModel):
    items: list[ProductOut]
    next_cursor: str | None = None


class Analysis(BaseModel):
    image: dict[str, Any]
    colors: dict[str, Any] | None
    texture: dict[str, Any] | None
    shape: dict[str, Any] | None
    pattern: dict[str, Any] | None
    foreground: dict[str, Any]
    labels: list[LabelOut]
    embedding: dict[str, Any]
    feature_version: str
    vector_dims: dict[str, int]
    categories: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)


class ProductCreated(BaseModel):
    product: ProductOut
    analysis: list[Analysis]


class SearchHit(BaseModel):
    product_id: str
    score: float
    title: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class SearchResults(BaseModel):
    results: list[SearchHit]
    took_ms: float


class ImportJobOut(BaseModel):
    id: str
    status: str
    total: int
    processed: int
    imported: int
    skipped: int
    rejected: int
    rejects: list[dict[str, Any]]
    error: str | None = None
    created_at: UTCDateTime | None = None
    started_at: UTCDateTime | None = None
    finished_at: UTCDateTime | None = None


class ModelSummary(BaseModel):
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
    created_at: UTCDateTime | None = None
    activated_at: UTCDateTime | None = None


class ModelDetail(ModelSummary):
    metrics: dict[str, Any]
    params: dict[str, Any]


class ModelList(BaseModel):
    models: list[ModelSummary]


class Feedback(BaseModel):
    """A person's correct value of one label field of a product."""

    model_config = {"extra": "forbid"}

    product_id: str = Field(min_length=1, max_length=128)
    field: str = Field(min_length=1, max_length=128)
    value: str = Field(min_length=1, max_length=256)


class FeedbackOut(BaseModel):
    product_id: str
    field: str
    value: str
    source: str
    categories: dict[str, dict[str, Any]]


JobKind = Literal[
    "label_catalog",
    "train_classifier",
    "train_recommendations",
    "evaluate_recommendations",
    "finetune_cnn",
    "switch_cnn",
    "train_localizer",
]


class Job(BaseModel):
    """A background job: what it does, how far it is, and what it found."""

    id: int
    kind: JobKind
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    stage: str | None = None
    done: int = Field(description="items done in the current stage")
    total: int = Field(description="items of the current stage (0: not counted)")
    params: dict[str, Any]
    result: dict[str, Any] | None = None
    error: str | None = None
    created_by: str | None = None
    created_at: UTCDateTime | None = None
    started_at: UTCDateTime | None = None
    finished_at: UTCDateTime | None = None
    url: str


class JobList(BaseModel):
    jobs: list[Job]


def job_body(row: dict[str, Any]) -> Job:
    values = {k: row.get(k) for k in Job.model_fields if k != "url"}
    return Job(**values, url=f"/v1/jobs/{row['id']}")
