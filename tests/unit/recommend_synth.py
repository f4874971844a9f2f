"""Synthetic shops for the recommendation tests: clustered looks, category-loyal customers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from vitrine.recommend.data import CatalogProduct, Dataset
from vitrine.recommend.events import DEFAULT_EVENT_WEIGHTS

CATEGORIES = ("Dress", "Shoes", "Bag")
START = datetime(2024, 1, 1, tzinfo=UTC)


def catalog(n_per_category: int = 30, dim: int = 16, seed: int = 0) -> Dataset:
    """Products whose embeddings cluster by category; colour aspects random."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CATEGORIES), dim)) * 3
    products, embeddings, colors = [], {}, {}
    for c, name in enumerate(CATEGORIES):
        for j in range(n_per_category):
            pid = f"{name[0]}{j:03d}"
            products.append(
                CatalogProduct(
                    pid,
                    f"{name} {j}",
                    {
                        "category": name,
                        "colour": ("Black", "Red", "Blue")[j % 3],
                        "price": float(10 + j),
                        "available": True,
                    },
                )
            )
            embeddings[pid] = centres[c] + rng.normal(size=dim)
            colors[pid] = rng.random(8)
    return Dataset.from_catalog(products, embeddings, {"color": colors}, embedding_dims=0)


def events(
    data: Dataset, n_users: int = 60, per_user: int = 8, seed: int = 1, days: int = 100
) -> list[tuple[str, str, str, datetime, float | None]]:
    """Each customer buys mostly from one favourite category; time-ordered."""
    rng = np.random.default_rng(seed)
    by_cat: dict[str, list[str]] = {}
    for pid, a in zip(data.items, data.attributes, strict=True):
        by_cat.setdefault(a["category"], []).append(pid)
    rows = []
    for u in range(n_users):
        favourite = CATEGORIES[u % len(CATEGORIES)]
        # a few items per category are best sellers
        for _ in range(per_user):
            cat = favourite if rng.random() < 0.85 else CATEGORIES[rng.integers(3)]
            pool = by_cat[cat]
            pid = pool[min(int(rng.exponential(6)), len(pool) - 1)]
            day = int(rng.integers(days))
            rows.append((f"u{u:03d}", pid, "purchase", START + timedelta(days=day), 20.0))
    rows.sort(key=lambda r: r[3])
    return rows


def shop(**kwargs: int) -> Dataset:
    data = catalog()
    return data.with_events(events(data, **kwargs), DEFAULT_EVENT_WEIGHTS)
