"""Synthetic Vitrine homes for the scale benchmark (``bench/bench_scale.py``), built in bulk.

A home of ``n`` products, ``10 n`` purchase events and ``n`` customers, written straight
into the database through :class:`vitrine.catalog.store.CatalogStore` (products, primary
images and their features) and Core ``INSERT`` batches (events): no photo is decoded.

* Products copy a row of the real fashion-small catalog (``SOURCE``, read only): its
  title, attributes, photo size and every stored feature (the CNN embedding and the
  colour, texture, shape, pattern and colour-layout aspects), each with Gaussian noise of
  ``NOISE`` times its norm and the norm restored (non-negative features stay so). Copies
  of one real product are therefore near neighbours, as variants of one model are, and
  the catalog's neighbourhood structure is the real one.
* Every photo row points at one of a handful of real photos copied into the home.
* Events: purchases by ``n`` customers with long-tailed activity (log-normal counts),
  long-tailed product popularity (Zipf, exponent ``ZIPF``), repeat buying (``REPEAT`` of
  a customer's purchases are a product they bought before) and taste (``SIBLING`` are a
  variant of something they bought), in baskets of ``BASKET`` on one day each, spread
  over one year, like the H&M log.

A home is complete when ``scale-build.json`` is in it; an incomplete one is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / ".cache" / "bench-fashion-home"  # bench_photo_search.py imports it
# Noise norm / feature norm: copies at cosine ~0.93 of their source, ~0.86 of each
# other (a real product's nearest neighbour: median cosine 0.89).
NOISE = 0.4
ZIPF = 1.1
REPEAT, SIBLING = 0.25, 0.25
BASKET = 3
PHOTOS = 40
LOG_END = datetime(2026, 11, 30, tzinfo=UTC)
BATCH = 5_000
EVENT_BATCH = 50_000


@dataclass
class RealCatalog:
    """The real catalog's rows: what synthetic products are copied from."""

    titles: list[str | None]
    attributes: list[str]  # JSON text, as stored
    sizes: np.ndarray  # N x 3: width, height, bytes
    features: dict[tuple[str, str], np.ndarray]  # (kind, version) -> N x dim
    blob_keys: list[str]

    def __len__(self) -> int:
        return len(self.titles)


def read_source(source: Path = SOURCE) -> RealCatalog:
    """Every product of the real catalog with its primary photo's features (read only)."""
    db = sqlite3.connect(f"file:{source / 'vitrine.db'}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT p.id, p.title, p.attributes, i.id, i.width, i.height, i.byte_size, i.blob_key "
        "FROM products p JOIN images i ON i.product_id = p.id AND i.is_primary ORDER BY p.id"
    ).fetchall()
    image_row = {r[3]: n for n, r in enumerate(rows)}
    features: dict[tuple[str, str], np.ndarray] = {}
    kinds = db.execute(
        "SELECT kind, version, dim FROM features WHERE dim > 0 GROUP BY kind, version"
    ).fetchall()
    for kind, version, dim in kinds:
        matrix = np.zeros((len(rows), dim), np.float32)
        for image_id, blob in db.execute(
            "SELECT image_id, vector FROM features WHERE kind = ? AND version = ?",
            (kind, version),
        ):
            if image_id in image_row:
                matrix[image_row[image_id]] = np.frombuffer(blob, "<f4")
        features[(kind, version)] = matrix
    db.close()
    return RealCatalog(
        titles=[r[1] for r in rows],
        attributes=[r[2] for r in rows],
        sizes=np.array([(r[4], r[5], r[6]) for r in rows], np.int64),
        features=features,
        blob_keys=[r[7] for r in rows],
    )


def noisy(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rows`` with Gaussian noise of ``NOISE`` times each row's norm, the norm restored."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    noise = rng.standard_normal(rows.shape, dtype=np.float32)
    noise *= NOISE * norms / np.sqrt(rows.shape[1])
    out = rows + noise
    if (rows >= 0).all():
        np.maximum(out, 0, out=out)
    scale = norms / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return (out * scale).astype(np.float32)


def product_id(n: int) -> str:
    return f"s{n:07d}"


def customer_id(n: int) -> str:
    return f"c{n:07d}"


def sizes_of(label: str) -> int:
    """``"10k"`` -> 10000, ``"1m"`` -> 1000000."""
    text = label.strip().lower()
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * factor)


def open_home(home: Path) -> Any:
    from vitrine.config import load_settings
    from vitrine.runtime import Runtime

    home.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(REPO / ".cache" / "models", target_is_directory=True)
    settings = load_settings(env={}).with_overrides(home=home, recommend_retrain_minutes=0)
    return Runtime(settings)


def ensure_home(home: Path, products: int, events: int, customers: int) -> dict[str, Any]:
    """The home's build record; builds the home first unless it is complete."""
    done = home / "scale-build.json"
    if done.exists():
        return json.loads(done.read_text())
    if home.exists():
        shutil.rmtree(home)
    print(f"building {home}: {products} products, {events} events ...", flush=True)
    real = read_source()
    vitrine = open_home(home)
    try:
        started = time.perf_counter()
        write_catalog(vitrine, real, products)
        catalog_s = time.perf_counter() - started
        started = time.perf_counter()
        write_events(vitrine, real, products, events, customers)
        events_s = time.perf_counter() - started
    finally:
        vitrine.close()
    record = {
        "products": products,
        "events": events,
        "customers": customers,
        "catalog_write_s": round(catalog_s, 1),
        "events_write_s": round(events_s, 1),
        "db_bytes": (home / "vitrine.db").stat().st_size,
    }
    done.write_text(json.dumps(record, indent=2))
    print(f"built: {record}", flush=True)
    return record


def write_catalog(vitrine: Any, real: RealCatalog, products: int) -> None:
    """Products, their primary photo rows and every feature, ``BATCH`` per transaction."""
    from vitrine.catalog.store import FeatureRecord, ImageRecord, ProductRecord

    rng = np.random.default_rng(products)
    photos = sorted(set(real.blob_keys))[:PHOTOS]
    for key in photos:  # the few real photos every product row points at
        target = vitrine.settings.home / "blobs" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SOURCE / "blobs" / key, target)
    for start in range(0, products, BATCH):
        n = np.arange(start, min(products, start + BATCH))
        src = n % len(real)
        vectors = {key: noisy(m[src], rng) for key, m in real.features.items()}
        prices = np.round(np.exp(rng.normal(3.3, 0.7, len(n))), 2)
        records, images = [], []
        for j, (i, s) in enumerate(zip(n.tolist(), src.tolist(), strict=True)):
            pid = product_id(i)
            records.append(
                ProductRecord(
                    pid, real.titles[s], price=float(prices[j]), attributes=_attrs(real, s)
                )
            )
            w, h, size = real.sizes[s].tolist()
            images.append(
                ImageRecord(
                    pid,
                    hashlib.sha256(pid.encode()).hexdigest(),
                    photos[i % len(photos)],
                    "JPEG",
                    w,
                    h,
                    size,
                    features=[
                        FeatureRecord(kind, version, m[j]) for (kind, version), m in vectors.items()
                    ],
                )
            )
        vitrine.store.save_products(records, images)
        if (start // BATCH) % 20 == 19:
            print(f"  {start + len(n)} products", flush=True)


_attr_cache: dict[int, dict[str, Any]] = {}


def _attrs(real: RealCatalog, s: int) -> dict[str, Any]:
    if s not in _attr_cache:
        _attr_cache[s] = json.loads(real.attributes[s] or "{}")
    return _attr_cache[s]


def event_arrays(
    real: int, products: int, events: int, customers: int, seed: int = 7
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, product, seconds before the log's end) of every event, by customer."""
    rng = np.random.default_rng(seed)
    # Activity: log-normal purchases per customer, scaled to ``events`` in all.
    weight = rng.lognormal(0.0, 1.2, customers)
    counts = np.maximum(1, np.round(weight / weight.sum() * events)).astype(np.int64)
    while counts.sum() > events:  # rounding: take the excess from the most active
        counts[np.argmax(counts)] -= counts.sum() - events
        counts = np.maximum(counts, 1)
    users = np.repeat(np.arange(customers), counts)[:events]
    users = np.concatenate([users, rng.integers(0, customers, events - len(users))])
    rng.shuffle(users)
    users = np.sort(users, kind="stable")
    # Popularity: Zipf over a random order of the products.
    ranks = np.arange(1, products + 1, dtype=np.float64)
    p = 1.0 / ranks**ZIPF
    order = rng.permutation(products)
    items = order[rng.choice(products, size=events, p=p / p.sum())]
    # Repeat buying and taste, within each customer's own run of events.
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    first = np.zeros(events, bool)
    first[starts] = True
    draw = rng.random(events)
    position = np.arange(events) - np.repeat(starts, np.diff(np.r_[starts, events]))
    earlier = np.arange(events) - 1 - (rng.random(events) * np.maximum(position, 1)).astype(int)
    repeat = ~first & (draw < REPEAT)
    items[repeat] = items[np.maximum(earlier[repeat], 0)]
    sibling = ~first & (draw >= REPEAT) & (draw < REPEAT + SIBLING)
    base = items[np.maximum(earlier[sibling], 0)] % real
    copies = np.maximum(1, -(-(products - base) // real))  # variants base + real j < products
    variant = base + real * (rng.random(sibling.sum()) * copies).astype(np.int64)
    items[sibling] = np.minimum(variant, products - 1)
    # Baskets: a customer's purchases come ``BASKET`` at a time, on one day of the year.
    trip = np.cumsum(first | (position % BASKET == 0)) - 1
    seconds = (rng.random(int(trip[-1]) + 1) * 365 * 86400)[trip] + rng.random(events) * 600
    return users, items, seconds


def write_events(
    vitrine: Any, real: RealCatalog, products: int, events: int, customers: int
) -> None:
    """The purchase log, ``EVENT_BATCH`` rows per transaction."""
    from vitrine.catalog.models import Event, utcnow

    users, items, seconds = event_arrays(len(real), products, events, customers)
    table = Event.__table__
    engine = vitrine.recommendations.engine
    now = utcnow()
    for start in range(0, events, EVENT_BATCH):
        stop = min(events, start + EVENT_BATCH)
        rows = [
            {
                "event_key": f"scale:{i}",
                "user_id": customer_id(u),
                "product_id": product_id(p),
                "type": "purchase",
                "ts": LOG_END - timedelta(seconds=s),
                "price": None,
                "created_at": now,
            }
            for i, u, p, s in zip(
                range(start, stop),
                users[start:stop].tolist(),
                items[start:stop].tolist(),
                seconds[start:stop].tolist(),
                strict=True,
            )
        ]
        with engine.begin() as conn:
            conn.execute(table.insert(), rows)
        if (start // EVENT_BATCH) % 10 == 9:
            print(f"  {stop} events", flush=True)
