"""A small shop for the admin UI's tests, served by the real recommendation service:
20 products in two categories (embeddings clustered by category, random colour vectors,
no photo decoding) with the customers' events a test gives."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.api.app import create_app
from vitrine.catalog.store import FeatureRecord, ImageRecord, ProductRecord
from vitrine.config import load_settings
from vitrine.recommend.strategies import Strategy
from vitrine.vision.features import FEATURE_VERSION

PASSWORD = "correct horse battery"


def purchases(start: datetime, customers: int = 30) -> list[dict[str, Any]]:
    """Three purchases by each customer ``u0``, ``u1``, ... (two of three buy shirts),
    one a day from ``start`` on, 15 customers a cycle."""
    return [
        {
            "user_id": f"u{u}",
            "product_id": f"{('sh', 'sh', 'so')[u % 3]}{(u + j) % 10}",
            "type": "purchase",
            "timestamp": start + timedelta(days=u % 15 + j),
        }
        for u in range(customers)
        for j in range(3)
    ]


def small_shop(
    home: Path, events: Sequence[dict[str, Any]], strategies: Sequence[Strategy] = ()
) -> Any:
    """The app (not started) with an admin ``alice``, the products ``sh0-9`` (shirts)
    and ``so0-9`` (shoes), the events, these strategies, and its models trained."""
    settings = load_settings(env={}).with_overrides(
        home=home, admin_recall_check_minutes=0, recommend_retrain_minutes=0
    )
    app = create_app(settings, warm=False)
    admin = app.state.admin
    admin.users.create("alice", PASSWORD, "admin")
    store = admin.vitrine.store
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16)) * 3
    for c, cat in enumerate(("shirts", "shoes")):
        for j in range(10):
            pid = f"{('sh', 'so')[c]}{j}"
            features = [
                FeatureRecord("embedding", "m1", vector=centres[c] + rng.normal(size=16)),
                FeatureRecord("color", FEATURE_VERSION, vector=rng.random(8)),
            ]
            image = ImageRecord(pid, f"h{pid}", f"k{pid}", "jpeg", 10, 10, 100, features=features)
            record = ProductRecord(pid, f"{cat} {j}", attributes={"category": cat})
            store.save_product(record, [image], replace_images=True)
    service = admin.vitrine.recommendations
    service.add_events(list(events))
    for strategy in strategies:
        service.strategies.put(strategy)
    service.train()
    return app
