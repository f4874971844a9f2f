"""Labels for the whole catalog: the active models label every product the shop left open.

Products get model labels on arrival, but a model trained or activated later must also
label the products already there: that is what a shop installs Vitrine for. For each
field of an active model, the job labels every product with no value of its own for
that field (no shop attribute, no human label) whose model label is missing or comes
from another model version; ``relabel`` labels them again even when the active version
already did. Products are read, predicted and written in chunks, so memory stays flat
and the labels appear while the job runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vitrine.catalog.store import CatalogStore
from vitrine.classify.dataset import clean_value
from vitrine.classify.features import load_features
from vitrine.classify.predictor import Predictor
from vitrine.classify.service import label_rows
from vitrine.webhooks.events import PRODUCT_LABELLED, Publish, labelled

CHUNK = 2_000


class CatalogLabeller:
    """Labels the stored catalog with the active classification models.

    ``predictor`` returns the active models (None when there are none); ``version`` the
    embedding version their features come from; ``publish`` announces each chunk written
    (one ``product.labelled`` event per chunk, with ``job_id``).
    """

    def __init__(
        self,
        store: CatalogStore,
        predictor: Callable[[], Predictor | None],
        embedding_version: Callable[[], str],
        publish: Publish | None = None,
        job_id: int | None = None,
    ) -> None:
        self.store = store
        self.predictor = predictor
        self.embedding_version = embedding_version
        self.publish = publish
        self.job_id = job_id

    def pending(
        self, predictor: Predictor, fields: Sequence[str] | None = None, relabel: bool = False
    ) -> dict[str, set[str]]:
        """Product id -> the fields to label for it."""
        chosen = [f for f in predictor.fields if fields is None or f in fields]
        shop_values: dict[str, set[str]] = {f: set() for f in chosen}
        everyone: list[str] = []
        for pid, _title, attributes in self.store.iter_attributes():
            everyone.append(pid)
            for f in chosen:
                if clean_value(attributes.get(f)) is not None:
                    shop_values[f].add(pid)
        todo: dict[str, set[str]] = {}
        for f in chosen:
            humans, model_versions = self.store.label_states(f)
            version = predictor.models[f].version
            for pid in everyone:
                if pid in humans or pid in shop_values[f]:
                    continue
                if not relabel and pid in model_versions and model_versions[pid] == version:
                    continue
                todo.setdefault(pid, set()).add(f)
        return todo

    def label(
        self,
        fields: Sequence[str] | None = None,
        *,
        relabel: bool = False,
        start: Callable[[str, int], None] | None = None,
        advance: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Label what :meth:`pending` finds; ``start(stage, total)`` and ``advance(n)``
        report progress. Returns counts by field."""
        predictor = self.predictor()
        if predictor is None:
            return {"labelled": 0, "by_field": {}, "without_features": 0, "fields": []}
        if start:
            start("finding products without a value", 0)
        todo = self.pending(predictor, fields, relabel)
        ids = sorted(todo)
        if start:
            start("labelling products", len(ids))
        version = self.embedding_version()
        by_field: dict[str, int] = {}
        missing = 0
        for begin in range(0, len(ids), CHUNK):
            chunk = ids[begin : begin + CHUNK]
            features = load_features(self.store, version, sorted(predictor.groups), chunk)
            missing += len(chunk) - len(features)
            rows = []
            if len(features):
                rows = label_rows(predictor.predict(features), features.ids, todo)
                for row in rows:
                    by_field[row["field"]] = by_field.get(row["field"], 0) + 1
            self.store.upsert_labels(rows)
            if rows and self.publish is not None:
                self.publish(PRODUCT_LABELLED, labelled(rows, self.job_id))
            if advance:
                advance(len(chunk))
        return {
            "labelled": len(ids) - missing,
            "by_field": by_field,
            "without_features": missing,
            "fields": [f for f in predictor.fields if fields is None or f in fields],
        }
