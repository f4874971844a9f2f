"""The review queue of the admin UI: a person confirms or corrects the model labels the
model is least sure of (active learning), one keystroke each.

The queue holds, per label field, the model labels no person has confirmed or corrected
and that the shop's own data does not overrule (``CatalogBrowser.review_queue``): those
the model flagged for review first, then by rising confidence. Each card shows the
model's other likely values: the active model's probabilities for that product when the
field has one (and the product has stored features), else the field's commonest values.

A decision is recorded through the same feedback as the product page's (a human label,
``ClassificationService.feedback``): it wins at once, and the next retraining of the
field learns from it (``classify.dataset.read_field_labels`` reads human labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vitrine.admin.ports import LabelFeedback
from vitrine.catalog.browse import CatalogBrowser, ReviewRow
from vitrine.classify.features import load_features
from vitrine.classify.predictor import OTHER
from vitrine.classify.service import ClassificationService

PAGE = 10  # cards on the page at once
MAX_PAGE = 100
ALTERNATIVES = 5  # keys 1-5
ACTIONS = ("confirm", "correct")


class UnknownFieldError(LookupError):
    """A field no model has labelled: there is no queue of it."""


@dataclass(frozen=True)
class Alternative:
    """Another value the model considers, with its probability when the model says."""

    value: str
    probability: float | None = None


@dataclass(frozen=True)
class ReviewItem:
    """One card of the queue: the model's label and the values it hesitated between."""

    row: ReviewRow
    alternatives: list[Alternative]
    margin: float | None = None  # top-1 minus top-2 probability of the active model
    source: str = "model"  # where the alternatives come from: model | values

    @property
    def product_id(self) -> str:
        return self.row.product_id


@dataclass
class ReviewPage:
    """The queue of one field as the page shows it, with what the last decision did."""

    field: str
    fields: list[tuple[str, int]]
    items: list[ReviewItem]
    remaining: int
    reviewed: int = 0  # decisions made in this browser session
    size: int = PAGE
    message: str = ""
    error: str = ""
    status: int = 200
    values: list[str] = field(default_factory=list)  # known values, for "another value"


class ReviewQueue:
    """Model labels awaiting a person, with their alternatives; records decisions.

    ``classification`` supplies the active models (for the alternatives' probabilities);
    ``feedback`` records a person's value (the product page's corrections use it too).
    """

    def __init__(
        self,
        browser: CatalogBrowser,
        feedback: LabelFeedback,
        classification: ClassificationService | None = None,
    ) -> None:
        self.browser = browser
        self.feedback = feedback
        self.classification = classification

    def page(self, field: str = "", *, size: int = PAGE, reviewed: int = 0) -> ReviewPage:
        """The ``size`` least certain labels of ``field`` (default: the field with most
        labels awaiting review). Raises UnknownFieldError for a field no model labelled."""
        fields = self.browser.review_fields()
        field = field.strip()
        if not field:
            waiting = [f for f in sorted(fields, key=lambda fc: -fc[1]) if f[1] > 0]
            field = (waiting or fields or [("", 0)])[0][0]
        else:
            _known(field, fields)
        size = max(1, min(size, MAX_PAGE))
        if not field:
            return ReviewPage("", fields, [], 0, reviewed, size)
        rows = self.browser.review_queue(field, size)
        values = self._known_values(field)
        return ReviewPage(
            field=field,
            fields=fields,
            items=self._items(field, rows, values),
            remaining=dict(fields)[field],
            reviewed=reviewed,
            size=size,
            values=values,
        )

    def decide(
        self,
        field: str,
        product_id: str,
        *,
        action: str,
        value: str = "",
        user: str,
        size: int = PAGE,
        reviewed: int = 0,
    ) -> ReviewPage:
        """Confirm the model's label (``action="confirm"``) or set ``value``
        (``"correct"``) for one product, then the queue as it is now. A refused decision
        leaves the queue unchanged and says why (``error``, ``status``)."""
        _known(field, self.browser.review_fields())
        message, error, status = "", "", 200
        if action not in ACTIONS:
            error, status = f"unknown action {action!r}: choose confirm or correct", 422
        else:
            try:
                message = self._record(field, product_id, action, value, user)
                reviewed += 1
            except LookupError as exc:
                error, status = str(exc.args[0] if exc.args else exc), 409
            except ValueError as exc:
                error, status = str(exc), 422
        page = self.page(field, size=size, reviewed=reviewed)
        page.message, page.error, page.status = message, error, status
        return page

    def _record(self, field: str, product_id: str, action: str, value: str, user: str) -> str:
        if not product_id.strip():
            raise ValueError("name the product to confirm or correct")
        pending = self.browser.review_queue(field, 1, product_ids=[product_id])
        if action == "confirm":
            if not pending:
                raise LookupError(
                    f"the {field} of {product_id!r} is not awaiting review any more "
                    "(someone confirmed or corrected it)"
                )
            label = pending[0]
            if label.value == OTHER:
                raise ValueError(
                    f"the model named no value of {field} for {product_id!r}: pick one"
                )
            self.feedback.correct(product_id, field, label.value, user=user)
            return f"Confirmed {field} = {label.value} for {_name(label, product_id)}."
        value = value.strip()
        if not value:
            raise ValueError("choose a value, or type another one")
        if value == OTHER:
            raise ValueError(f"{OTHER} is not a value; type the right one")
        self.feedback.correct(product_id, field, value, user=user)
        before = f" (the model said {pending[0].value})" if pending else ""
        name = _name(pending[0], product_id) if pending else repr(product_id)
        return f"Corrected {field} = {value} for {name}{before}."

    # -- alternatives -------------------------------------------------------------------

    def _known_values(self, field: str) -> list[str]:
        values = [*self.browser.field_values(field)]
        values += self.browser.attribute_values().get(field, [])
        return [v for v in dict.fromkeys(values) if v != OTHER]

    def _items(
        self, field: str, rows: Sequence[ReviewRow], values: Sequence[str]
    ) -> list[ReviewItem]:
        predicted = self._probabilities(field, [r.product_id for r in rows])
        items = []
        for row in rows:
            ranked = predicted.get(row.product_id)
            if ranked:
                others = [a for a in ranked if a.value not in (row.value, OTHER)]
                chosen = next((a.probability for a in ranked if a.value == row.value), None)
                margin = None
                if chosen is not None:  # over the runner-up the card shows
                    runner_up = (others[0].probability or 0.0) if others else 0.0
                    margin = round(chosen - runner_up, 4)
                items.append(ReviewItem(row, others[:ALTERNATIVES], margin))
            else:
                others = [Alternative(v) for v in values if v != row.value]
                items.append(ReviewItem(row, others[:ALTERNATIVES], None, "values"))
        return items

    def _probabilities(self, field: str, ids: Sequence[str]) -> dict[str, list[Alternative]]:
        """Product id -> every class of the field's active model, most probable first
        (only products with stored features; none when the field has no active model)."""
        service = self.classification
        if service is None or not ids:
            return {}
        if not any(m["field"] == field for m in service.registry.active()):
            return {}  # (asking for the predictor would load the CNN for nothing)
        predictor = service.predictor()
        if predictor is None or field not in predictor.models:
            return {}
        features = load_features(
            service.store, service.embedding_version, sorted(predictor.groups), list(ids)
        )
        if not len(features):
            return {}
        prediction = predictor.predict(features)[field]
        out = {}
        for i, pid in enumerate(features.ids):
            order = np.argsort(-prediction.proba[i], kind="stable")
            out[pid] = [
                Alternative(str(prediction.classes[j]), round(float(prediction.proba[i, j]), 4))
                for j in order
            ]
        return out


def _known(field: str, fields: Sequence[tuple[str, int]]) -> None:
    if field not in dict(fields):
        raise UnknownFieldError(f"no model has labelled a field {field!r}: nothing of it to review")


def _name(row: ReviewRow, product_id: str) -> str:
    return f"“{row.title}”" if row.title else repr(product_id)
