"""Vitrine's configuration, in one place.

Every setting has a default that works on a laptop with no server. A setting is
overridden, in increasing priority, by a TOML file (``VITRINE_CONFIG``, or
``vitrine.toml`` in the working directory when present) and by an environment
variable ``VITRINE_<NAME>`` (for example ``VITRINE_HOME=/srv/vitrine``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_type_hints

ENV_PREFIX = "VITRINE_"


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    """All of Vitrine's settings; see README "Configuration" for what each does."""

    home: Path = Path("var")
    database_url: str = ""  # default: SQLite in ``home``
    blob_url: str = ""  # default: a directory in ``home``

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # API processes of `vitrine serve`; each keeps its own index

    # Image intake limits.
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000

    # Deep embedding.
    embedding_precision: Literal["auto", "fp32", "int8"] = "auto"  # auto: vision.cpu, runtime
    embedding_threads: int = 0  # 0: all cores
    embedding_batch_size: int = 32
    top_labels: int = 5
    embedding_model: str = ""  # a fine-tuned model version in models/ ("" = pretrained)

    # Visual index.
    index_hnsw_threshold: int = 5_000
    index_hnsw_m: int = 32
    index_ef_construction: int = 200
    index_ef_search: int = 64
    # How the HNSW index keeps the embeddings: float16 halves their memory (for large
    # catalogs; see docs/scaling.md), float32 is exact.
    index_storage: Literal["float32", "float16"] = "float32"
    # Every process maps the saved vectors and the aspect snapshot read-only (shared
    # page-cache pages) instead of holding its own copy; false: private copies.
    index_shared: bool = True

    # Search by photo: aspect weights of the re-ranking ("" = the built-in defaults, see
    # index/fusion.py; e.g. "embedding=2,layout_aligned=1.5,color=0.75") and how many
    # candidates each source (ANN, exact aspect scans) contributes.
    search_aspect_weights: str = ""
    search_candidates: int = 50
    # The aspect scans become IVF indexes (sublinear, index.aspect_scan) from this many
    # products on; below it they are exact. ``nprobe``: inverted lists read per query.
    scan_ann_min_products: int = 50_000
    scan_ann_nprobe: int = 24
    # Products in real photos (scene search, snapshots): the classifier field answered as
    # each object's category, and how often the leader checks whether the catalog has
    # grown by a quarter since the localiser was trained (0: only on demand).
    scene_category_field: str = "articleType"
    localizer_retrain_minutes: int = 60
    # Virtual try-on: which values of the category field are eyewear, headwear and tops
    # (comma-separated, compared case-insensitively).
    tryon_category_field: str = "articleType"
    tryon_eyewear: str = "Sunglasses,Eyewear,Spectacles,Glasses,Spectacle Frames"
    tryon_headwear: str = "Caps,Hats,Headwear,Beanies,Headband"
    tryon_tops: str = (
        "Tshirts,Tops,Shirts,Sweatshirts,Sweaters,Jackets,Kurtas,Kurtis,Tunics,Blazers"
    )

    # Links to the shop: its own address (""; the request's), a product page's address
    # ("https://shop.example/products/{id}"), and product photos: Vitrine's public image
    # route /images/{id}.jpg (off unless public_images) or the shop's own photo addresses.
    public_url: str = ""
    product_link_pattern: str = ""
    public_images: bool = False
    image_link_pattern: str = ""
    # Product feed (CSV / JSON for ad platforms): the price's currency, and which catalog
    # fields are the brand and the category path ("a > b > c").
    feed_currency: str = "EUR"
    feed_brand_field: str = "brand"
    feed_category_fields: str = "masterCategory,subCategory,articleType"
    # Visual search ads: the catalog field a new campaign's categories name ("": the
    # scene search's category field).
    ads_category_field: str = ""

    # Bulk import.
    import_workers: int = 0  # 0: one per core
    import_db_batch: int = 256

    # HTTP API.
    api_rate_limit: int = 200  # requests per second per key; 0: unlimited
    api_rate_burst: int = 400
    max_request_bytes: int = 64 * 1024 * 1024  # any request body except imports
    max_import_bytes: int = 4 * 1024 * 1024 * 1024  # CSV + zip of a bulk import
    cors_origins: str = ""  # comma-separated origins allowed to call the API from a browser

    # Storefronts (the JavaScript kit at /kit/v1/vitrine.js with a storefront key). The
    # origins each storefront key lists are allowed; these are answered in CORS preflight
    # as well (comma-separated). Every client address has its own limit per key besides
    # the key's; events of these types only may come from a page (purchases come from
    # the shop's server).
    storefront_origins: str = ""
    storefront_client_rate_limit: float = 20.0  # requests per second per address and key
    storefront_client_rate_burst: int = 60
    storefront_event_types: str = "view,click,add_to_cart,remove_from_cart"
    # Signed photo addresses in product cards (<img src> sends no key): how long one is
    # valid, and the secret that signs them ("": a random one kept in the home folder;
    # set the same one on every node of a cluster).
    image_url_hours: int = 24
    image_url_secret: str = ""
    # The demo storefront at /demo (off unless on): it uses only the kit and this
    # storefront key, which must be created first (vitrine keys create --scope storefront).
    demo_storefront: bool = False
    demo_storefront_key: str = ""
    import_root: Path | None = None  # server-side folder that imports may read from
    # What an uploaded zip of photos may expand to; a larger one is refused (413) unread.
    import_zip_max_bytes: int = 4 * 1024 * 1024 * 1024
    import_zip_max_entries: int = 200_000
    import_zip_max_ratio: float = 100.0  # uncompressed / compressed, per entry
    batch_wait_ms: int = 5  # how long a CNN call waits to gather concurrent uploads
    log_level: str = "INFO"
    # OpenTelemetry traces (docs/operations.md "Traces"): the OTLP/HTTP collector spans
    # are sent to ("" = tracing off), e.g. http://collector:4318; headers sent with them
    # ("key=value,..."); the share of new traces kept (a traced caller's choice is kept).
    otlp_endpoint: str = ""
    otlp_headers: str = ""
    trace_sample_ratio: float = 1.0

    # Scale-out: an S3-compatible blob store (blob_url s3://bucket/prefix); credentials come
    # only from the standard AWS variables or profile, never from here.
    s3_endpoint_url: str = ""  # empty: AWS; else MinIO, Ceph, Swift s3api, ...
    s3_region: str = ""  # empty: boto3's default
    s3_path_style: bool = False  # path-style addressing (most self-hosted S3 servers)
    # Several API processes on one database: how often each looks for the others' changes
    # (PostgreSQL also wakes it with NOTIFY), and how long changes are kept.
    change_feed_poll_ms: int = 250
    change_feed_retention_s: int = 3600

    # Admin web UI (/admin).
    admin_session_hours: int = 12  # a session ends this long after sign-in
    admin_lockout_attempts: int = 5  # consecutive failed sign-ins that lock an account
    admin_lockout_minutes: int = 15  # how long a locked account stays locked
    admin_cookie_secure: bool = False  # set true when the UI is served over HTTPS
    admin_recall_check_minutes: int = 10  # approximate-vs-exact index recall check period
    # The product page's attribute columns, in order (TOML list or comma-separated); empty:
    # all but code / id-like ones (names ending _code, _no, _id; values all digits).
    admin_product_columns: tuple[str, ...] = ()
    # Classification (the shop's own categories and tags).
    classify_min_support: int = 10  # classes with fewer training examples are "rare"
    classify_rare_policy: Literal["other", "drop"] = "other"  # merge rare classes, or drop them
    classify_holdout: float = 0.2  # share of labelled products held out (calibration + eval)
    classify_review_precision: float = 0.9  # abstain threshold: this precision when accepted
    classify_correction_weight: float = 3.0  # training weight of a human correction
    classify_retrain_after: int = 50  # corrections of a field that trigger a retrain (0: never)
    classify_retrain_interval_hours: float = 0.0  # also retrain on this schedule (0: never)
    classify_retrain_check_seconds: float = 60.0  # how often the background retrainer looks
    classify_activation_tolerance: float = 0.0  # how much worse a retrained model may be
    classify_feature_groups: str = ""  # e.g. "embedding+color"; empty: chosen per field
    classify_text: bool = True  # also learn from product titles / descriptions (when it helps)
    # Recommendations (see README "Recommendations").
    # Custom event types and weights, merged over the built-in ones: "wishlist=3,return=-4".
    recommend_event_weights: str = ""
    recommend_half_life_days: float = 30.0  # recency weighting of a customer's history
    recommend_category_field: str = ""  # product attribute naming the category; "" = detect
    recommend_default_strategy: str = "default"
    recommend_retrain_minutes: int = 60  # background retraining period; 0: only on demand
    # Output folder of `vitrine spark train-als`: when set, "als" (and the hybrid's ALS
    # source) use those factors instead of training ALS in-process.
    recommend_als_factors: str = ""
    recommend_cache_size: int = 50_000  # customers' last lists kept (exactly invalidated)
    recommend_precompute: int = 20_000  # most recent customers' lists computed at training
    # ... for at most this long (most recent first; the rest are computed when asked); 0:
    # no bound but the count. A list not precomputed costs its first request ~10-20 ms of
    # CPU: at 200 requests/s that saturates 2 cores (docs/benchmarks.md, Scale).
    recommend_precompute_seconds: float = 0.0
    # The hybrid ranker learns from at most this many customers who bought in each of its
    # training windows (a seeded sample; 0: all of them): bounds training time and memory.
    recommend_hybrid_customers_per_window: int = 1_000
    # Products added or changed after training join the lists at most this often (a
    # cached list of the previous catalog is served this long more, recomputed behind).
    recommend_catalog_refresh_s: float = 15.0
    recommend_event_refresh_k: int = 12  # an event recomputes the default list of k (0: off)
    # How long a server thread computing (a list, a photo) may keep the GIL while the event
    # loop waits for it (Python's default: 5 ms); 0: leave Python's default.
    serve_gil_switch_ms: float = 1.0

    # Webhooks: how long a receiver has to answer, the attempts of a delivery and the
    # exponential backoff between them (1 min, 3, 9, ... at most 6 h: ten attempts span
    # about a day), whether private addresses are refused, and how long the delivery log
    # keeps delivered and failed deliveries.
    webhook_timeout_s: float = 10.0
    webhook_max_attempts: int = 10
    webhook_retry_base_s: float = 60.0
    webhook_retry_cap_s: float = 6 * 3600.0
    webhook_block_private: bool = False
    webhook_retention_days: int = 30
    webhook_poll_s: float = 5.0  # how often the leader looks for due deliveries

    config_file: Path | None = field(default=None, compare=False)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'vitrine.db').resolve()}"

    @property
    def resolved_blob_url(self) -> str:
        if self.blob_url:
            return self.blob_url
        return (self.home / "blobs").resolve().as_uri()

    @property
    def model_dir(self) -> Path:
        return self.home / "models"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    def with_overrides(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, raw: Any, target: Any) -> Any:
    """Turn a TOML or environment value into the type the setting declares."""
    try:
        if target is Path or target == Path | None:
            return Path(str(raw)).expanduser()
        if target is int:
            return int(raw)
        if target is float:
            return float(raw)
        if target is bool:
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in {"1", "true", "yes", "on"}
        if getattr(target, "__origin__", None) is tuple:  # a list of names
            items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        if getattr(target, "__origin__", None) is Literal:
            if raw not in target.__args__:
                allowed = ", ".join(map(str, target.__args__))
                raise ConfigError(f"setting {name!r} must be one of {allowed}, got {raw!r}")
            return raw
        return str(raw)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"setting {name!r}: cannot read {raw!r} ({exc})") from exc


def load_settings(
    env: Mapping[str, str] | None = None, config_file: Path | None = None
) -> Settings:
    """Build the settings from defaults, an optional TOML file and ``VITRINE_*`` variables."""
    env = os.environ if env is None else env
    hints = get_type_hints(Settings)
    values: dict[str, Any] = {}

    path = config_file or (
        Path(env[f"{ENV_PREFIX}CONFIG"]) if f"{ENV_PREFIX}CONFIG" in env else None
    )
    if path is None and Path("vitrine.toml").is_file():
        path = Path("vitrine.toml")
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
        section = data.get("vitrine", data)
        known = {f.name for f in fields(Settings)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"unknown settings in {path}: {', '.join(unknown)}")
        values.update({k: _coerce(k, v, hints[k]) for k, v in section.items()})
        values["config_file"] = path

    for f in fields(Settings):
        key = ENV_PREFIX + f.name.upper()
        if key in env and f.name != "config_file":
            values[f.name] = _coerce(f.name, env[key], hints[f.name])
    return Settings(**values)
