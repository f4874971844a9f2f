"""What the recommenders learn from: the event log and the catalog, as arrays.

:class:`Dataset` maps product ids to dense item indices (catalog products first, then
products that appear only in events: they tell about the customer but are never
recommended) and customer ids to user indices, and holds per catalog item its CNN
embedding, aspect vectors (an :class:`~vitrine.index.aspect_store.AspectStore`), category,
price, availability, and a few categorical *facets* (the product's attributes with few
distinct values: type, colour, pattern, department, ...) that describe taste.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np

from vitrine.index import AttributeIndex
from vitrine.index.aspect_store import AspectStore

DAY = 86_400.0
ASPECT_KINDS = ("color", "texture", "shape", "pattern")
CATEGORY_CANDIDATES = (
    "product_type_name",
    "articleType",
    "category",
    "product_type",
    "subCategory",
    "type",
)
MAX_FACET_VALUES = 400
MAX_FACETS = 10
EMBEDDING_DIMS = 128
# A product whose record is younger than its first event (a catalog imported beside an
# older log) is taken as on sale this many days before that event (one label period of
# the hybrid): see Dataset.launch_days.
LAUNCH_LEAD_DAYS = 28.0
_SKIP_FACETS = {"available", "price", "title", "description"}


def _same_partition(a: Sequence[str | None], b: Sequence[str | None]) -> bool:
    """Whether two columns group the products identically (one is a relabelling)."""
    pairs = set(zip(a, b, strict=True))
    return len(pairs) == len(set(a)) == len(set(b))


_NAIVE_EPOCH = datetime(1970, 1, 1)


def to_days(ts: datetime) -> float:
    """Days since 1970-01-01 UTC (a time without a zone is UTC, as the database keeps it)."""
    if ts.tzinfo is None:
        return (ts - _NAIVE_EPOCH).total_seconds() / DAY
    return ts.timestamp() / DAY


def event_day(ts: datetime | None, latest: float) -> float | None:
    """A stored event's day, or None when it cannot be used: no time, one that cannot be
    read, or one outside 1970-01-01 .. day ``latest`` (such rows get past validation only
    when written around it, and must never stop a training)."""
    try:
        day = to_days(ts)  # type: ignore[arg-type]
    except (AttributeError, TypeError, ValueError, OverflowError, OSError):
        return None
    return day if 0.0 <= day <= latest else None  # also NaN


@dataclass
class CatalogProduct:
    """One product as the recommender reads it from the catalog."""

    id: str
    title: str | None
    attributes: dict[str, Any]
    created: datetime | None = None  # when the product's record was created


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass
class Projection:
    """How raw CNN embeddings map into a dataset's visual space: unit rows, minus
    ``mean``, onto ``axes`` (None: kept whole), unit again. Products added to the
    catalog after training are projected with their snapshot's projection."""

    mean: np.ndarray | None = None
    axes: np.ndarray | None = None  # dims x raw dims

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Rows of raw embeddings in the visual space (a zero row stays zero)."""
        x = _unit(np.atleast_2d(np.asarray(raw, np.float32)))
        has = np.abs(x).sum(axis=1) > 0
        if self.axes is not None and self.mean is not None:
            x = _unit((x - self.mean) @ self.axes.T)
        return np.ascontiguousarray(x * has[:, None], np.float32)


def reduce_dimensions(emb: np.ndarray, has: np.ndarray, dims: int) -> tuple[np.ndarray, Projection]:
    """Unit rows projected on the ``dims`` principal axes of the catalog's embeddings.

    Cosines are kept closely (the CNN's 1280 dimensions are highly redundant on one
    shop's photos) while every visual score of a request costs ``dims / 1280`` as much.
    """
    rows = np.flatnonzero(has)
    if dims <= 0 or dims >= emb.shape[1] or len(rows) <= dims:
        return np.ascontiguousarray(emb, np.float32), Projection()
    sample = rows if len(rows) <= 20_000 else np.random.default_rng(0).choice(rows, 20_000, False)
    mean = emb[sample].mean(axis=0)
    _, _, vt = np.linalg.svd(emb[sample] - mean, full_matrices=False)
    projection = Projection(mean.astype(np.float32), vt[:dims].astype(np.float32))
    reduced = (emb - mean) @ vt[:dims].T
    return np.ascontiguousarray(_unit(reduced) * has[:, None], np.float32), projection


def as_scalar(value: Any) -> str | None:
    if value is None or isinstance(value, list | dict | bool):
        return None
    text = str(value).strip()
    return text or None


# built on first use, never pickled or copied (``before`` shares them: same catalog)
_LAZY = ("aspects", "filters", "photos", "photo_retrieval")


@dataclass
class Dataset:
    """Items, users, events and catalog features, aligned by index."""

    items: list[str]
    item_index: dict[str, int]
    n_catalog: int
    titles: list[str | None]
    attributes: list[dict[str, Any]]
    embeddings: np.ndarray  # n_catalog x d, unit rows (zero row: no photo)
    has_embedding: np.ndarray  # n_catalog bool
    aspect_vectors: dict[str, tuple[list[str], np.ndarray]]
    category_field: str | None
    category: np.ndarray  # n_catalog int32 (-1: none)
    categories: list[str]
    facets: list[str]  # facet attribute names
    facet_codes: np.ndarray  # n_catalog x n_facets int32 (-1: none)
    facet_values: list[list[str]]
    price: np.ndarray  # n_catalog float32 (nan: unknown)
    available: np.ndarray  # n_catalog bool
    # n_catalog bool: a product of the catalog now (False: deleted, or a row that only
    # events know, in a catalog extended after training; see recommend/live_catalog.py)
    listed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    # n_catalog float64: the day each product record was created (nan: not known)
    created_day: np.ndarray = field(default_factory=lambda: np.zeros(0))
    projection: Projection = field(default_factory=Projection)
    embedding_version: str | None = None
    users: list[str] = field(default_factory=list)
    user_index: dict[str, int] = field(default_factory=dict)
    # the event log, in time order
    ev_user: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    ev_item: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    ev_day: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    ev_weight: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    ev_purchase: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    ev_price: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # stored events with_events left out: a time out of range or that cannot be read
    skipped_events: int = 0

    def __post_init__(self) -> None:
        if len(self.listed) != self.n_catalog:
            self.listed = np.ones(self.n_catalog, bool)
        if len(self.created_day) != self.n_catalog:
            self.created_day = np.full(self.n_catalog, np.nan)

    # -- building -----------------------------------------------------------------------

    @classmethod
    def from_catalog(
        cls,
        products: Sequence[CatalogProduct],
        embeddings: Mapping[str, np.ndarray],
        aspects: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        category_field: str = "",
        embedding_dims: int = EMBEDDING_DIMS,
    ) -> Dataset:
        """The catalog part; events are added with :meth:`with_events`."""
        items = [p.id for p in products]
        index = {pid: i for i, pid in enumerate(items)}
        n = len(items)
        dim = next((len(v) for v in embeddings.values()), 1)
        emb = np.zeros((n, dim), np.float32)
        has = np.zeros(n, bool)
        for pid, vec in embeddings.items():
            row = index.get(pid)
            if row is not None:
                emb[row] = vec
                has[row] = True
        emb, projection = reduce_dimensions(_unit(emb) * has[:, None], has, embedding_dims)
        aspect_vectors = {}
        for kind, by_id in (aspects or {}).items():
            ids = [pid for pid in by_id if pid in index]
            if ids:
                aspect_vectors[kind] = (ids, np.vstack([by_id[p] for p in ids]))
        attrs = [dict(p.attributes) for p in products]
        field_name = category_field or next(
            (c for c in CATEGORY_CANDIDATES if any(c in a for a in attrs)), None
        )
        categories: dict[str, int] = {}
        category = np.full(n, -1, np.int32)
        if field_name:
            for row, a in enumerate(attrs):
                value = as_scalar(a.get(field_name))
                if value is not None:
                    category[row] = categories.setdefault(value, len(categories))
        facets = cls._pick_facets(attrs, field_name)
        codes = np.full((n, len(facets)), -1, np.int32)
        facet_values: list[list[str]] = []
        for j, name in enumerate(facets):
            values: dict[str, int] = {}
            for row, a in enumerate(attrs):
                value = as_scalar(a.get(name))
                if value is not None:
                    codes[row, j] = values.setdefault(value, len(values))
            facet_values.append(list(values))
        price = np.array(
            [
                float(a["price"]) if isinstance(a.get("price"), int | float) else np.nan
                for a in attrs
            ],
            np.float32,
        )
        available = np.array([a.get("available", True) is not False for a in attrs], bool)
        created = np.array([to_days(p.created) if p.created else np.nan for p in products])
        return cls(
            items=items,
            item_index=index,
            n_catalog=n,
            titles=[p.title for p in products],
            attributes=attrs,
            embeddings=emb,
            has_embedding=has,
            aspect_vectors=aspect_vectors,
            category_field=field_name,
            category=category,
            categories=list(categories),
            facets=facets,
            facet_codes=codes,
            facet_values=facet_values,
            price=price,
            available=available,
            created_day=created,
            projection=projection,
        )

    @staticmethod
    def _pick_facets(attrs: Sequence[Mapping[str, Any]], category_field: str | None) -> list[str]:
        """Attributes with 2..MAX_FACET_VALUES distinct text values on most products."""
        if not attrs:
            return []
        counts: dict[str, set[str]] = {}
        present: dict[str, int] = {}
        for a in attrs:
            for key, value in a.items():
                if key in _SKIP_FACETS or isinstance(value, bool | int | float):
                    continue
                text = as_scalar(value)
                if text is None:
                    continue
                present[key] = present.get(key, 0) + 1
                seen = counts.setdefault(key, set())
                if len(seen) <= MAX_FACET_VALUES:
                    seen.add(text)
        good = [
            k
            for k, v in counts.items()
            if 2 <= len(v) <= MAX_FACET_VALUES and present[k] >= 0.5 * len(attrs)
        ]
        # Prefer the category, then the most informative (most values) facets; skip a
        # facet that only renames another (a code column beside its name column).
        good.sort(key=lambda k: (k != category_field, -len(counts[k]), k))
        chosen: list[str] = []
        for key in good:
            values = [as_scalar(a.get(key)) for a in attrs]
            if not any(
                _same_partition(values, [as_scalar(a.get(c)) for a in attrs]) for c in chosen
            ):
                chosen.append(key)
            if len(chosen) == MAX_FACETS:
                break
        return chosen

    def with_events(
        self,
        events: Iterable[tuple[str, str, str, datetime | None, float | None]],
        weights: Mapping[str, float],
        *,
        latest: datetime | None = None,
    ) -> Dataset:
        """Add the event log: (user, product, type, time, price) in time order.

        An event without a usable time (none, unreadable, before 1970 or after ``latest``,
        by default a day from now) is left out and counted in ``skipped_events``.
        """
        last_day = to_days(latest) if latest is not None else time.time() / DAY + 1.0
        skipped = 0
        users: dict[str, int] = {}
        items = list(self.items)
        index = dict(self.item_index)
        u: list[int] = []
        i: list[int] = []
        d: list[float] = []
        w: list[float] = []
        buy: list[bool] = []
        price: list[float] = []
        for user, product, type_, ts, p in events:
            if type_ not in weights:
                continue  # a type that was removed from the configuration
            day = event_day(ts, last_day)
            if day is None:
                skipped += 1
                continue
            u.append(users.setdefault(user, len(users)))
            row = index.get(product)
            if row is None:
                row = index[product] = len(items)
                items.append(product)
            i.append(row)
            d.append(day)
            w.append(weights[type_])
            buy.append(type_ == "purchase")
            price.append(np.nan if p is None else p)
        out = self._copy()
        out.items, out.item_index = items, index
        out.users, out.user_index = list(users), users
        out.ev_user = np.array(u, np.int32)
        out.ev_item = np.array(i, np.int32)
        out.ev_day = np.array(d, np.float64)
        out.ev_weight = np.array(w, np.float32)
        out.ev_purchase = np.array(buy, bool)
        out.ev_price = np.array(price, np.float32)
        out.ev_price[~np.isfinite(out.ev_price)] = np.nan  # a stored infinite price: unknown
        out.skipped_events = skipped
        order = np.argsort(out.ev_day, kind="stable")
        if len(order) and (order != np.arange(len(order))).any():
            for name in ("ev_user", "ev_item", "ev_day", "ev_weight", "ev_purchase", "ev_price"):
                setattr(out, name, getattr(out, name)[order])
        return out

    def _copy(self) -> Dataset:
        lazy = _LAZY
        return Dataset(**{k: v for k, v in self.__dict__.items() if k not in lazy})

    def before(self, day: float) -> Dataset:
        """The same catalog and users with only the events before ``day``."""
        keep = self.ev_day < day
        out = self._copy()
        for name in ("ev_user", "ev_item", "ev_day", "ev_weight", "ev_purchase", "ev_price"):
            setattr(out, name, getattr(self, name)[keep])
        for name in _LAZY:
            if name in self.__dict__:
                out.__dict__[name] = self.__dict__[name]
        return out

    # -- lazily built indexes (not pickled) -----------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _LAZY}

    @cached_property
    def aspects(self) -> AspectStore:
        """The aspect vectors of the catalog, for weighted visual similarity."""
        store = AspectStore()
        for kind, (ids, matrix) in self.aspect_vectors.items():
            store.upsert(ids, {kind: matrix}, replace=False)
        return store

    @cached_property
    def photos(self) -> tuple[np.ndarray, np.ndarray]:
        """(the catalog items with a photo, their embeddings): gathered once, not on
        every request."""
        rows = np.flatnonzero(self.has_embedding)
        return rows, np.ascontiguousarray(self.embeddings[rows])

    @cached_property
    def filters(self) -> AttributeIndex:
        """Attribute filters (``field=value``, ``price<=50``) over the catalog."""
        index = AttributeIndex()
        for pid, a in zip(self.items, self.attributes, strict=False):
            index.set(pid, a)
        return index

    # -- views --------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def recommendable(self) -> np.ndarray:
        """Per catalog item: in the catalog now and available."""
        return self.available & self.listed

    def first_event_days(self) -> np.ndarray:
        """Per item (catalog rows first, then event-only ones): the day of its first
        event (nan: none)."""
        first = np.full(self.n_items, np.nan)
        # events are in time order: the last write per item, going backwards, is its first
        first[self.ev_item[::-1]] = self.ev_day[::-1]
        return first

    def launch_days(self, lead_days: float = LAUNCH_LEAD_DAYS) -> np.ndarray:
        """Per catalog item: the day it went on sale, as far as the catalog and the log
        tell (-inf: as long as the log knows).

        A product created before its first event was on sale from its creation. A
        product whose record is younger than its first event (a catalog imported beside
        an older log) is taken as on sale ``lead_days`` before that event. A product
        nobody interacted with is on sale from its creation (always, if that is not
        known). A time-split model trained on a past period must only see the products
        on sale then: a product launched later is not a negative of that period.
        """
        first = self.first_event_days()[: self.n_catalog]
        created = self.created_day
        with np.errstate(invalid="ignore"):
            credible = created <= first  # False where nan or younger than its first event
        out = np.where(np.isnan(first), created, np.where(credible, created, first - lead_days))
        return np.where(np.isnan(out), -np.inf, out)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def last_day(self) -> float:
        return float(self.ev_day[-1]) if len(self.ev_day) else 0.0

    def histories(self) -> list[History]:
        """Every user's history, by user index."""
        return self.histories_of(np.arange(self.n_users))

    def histories_of(self, users: np.ndarray) -> list[History]:
        """These users' histories (user indices), in that order: one argsort of the event
        arrays, no Python object for the users left out."""
        order = np.argsort(self.ev_user, kind="stable")
        sorted_users = self.ev_user[order]
        users = np.asarray(users, np.int64)
        starts = np.searchsorted(sorted_users, users, "left")
        ends = np.searchsorted(sorted_users, users, "right")
        out = []
        for user, a, b in zip(users.tolist(), starts.tolist(), ends.tolist(), strict=True):
            rows = order[a:b]
            out.append(
                History(
                    self.ev_item[rows],
                    self.ev_day[rows],
                    self.ev_weight[rows],
                    self.ev_purchase[rows],
                    user=user,
                )
            )
        return out

    def history_of(self, product_ids: Sequence[str], day: float, weight: float = 1.0) -> History:
        """An anonymous session's history: these products, all at ``day``."""
        rows = [self.item_index[p] for p in product_ids if p in self.item_index]
        n = len(rows)
        return History(
            np.array(rows, np.int32),
            np.full(n, day),
            np.full(n, weight, np.float32),
            np.zeros(n, bool),
            user=None,
        )


@dataclass
class History:
    """One customer's (or session's) events: item indices, days, type weights."""

    items: np.ndarray
    days: np.ndarray
    weights: np.ndarray
    purchases: np.ndarray
    user: int | None = None

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def empty(cls) -> History:
        return cls(np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.float32), np.zeros(0, bool))

    def appended(self, item: int, day: float, weight: float, purchase: bool) -> History:
        return History(
            np.append(self.items, np.int32(item)),
            np.append(self.days, day),
            np.append(self.weights, np.float32(weight)),
            np.append(self.purchases, purchase),
            self.user,
        )

    def item_weights(self, now: float, half_life: float) -> dict[int, float]:
        """Recency- and type-weighted interest per item (negative events subtract)."""
        decay = np.power(0.5, np.maximum(now - self.days, 0.0) / max(half_life, 1e-6))
        out: dict[int, float] = {}
        for item, w in zip(self.items.tolist(), (self.weights * decay).tolist(), strict=True):
            out[item] = out.get(item, 0.0) + w
        return out
