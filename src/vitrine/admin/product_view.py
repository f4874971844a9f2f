"""The product page of the admin UI: the shop's labels first, the attributes the shop
chose, the photo analysis, and similar and complementary products as cards.

A field's value comes, as everywhere in Vitrine (``classify.labels``), from a person's
correction first, then the shop's own attribute, then the model; the page says which,
and what the model thinks when it is overruled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vitrine.admin.ports import RecommendationAdmin, RecommendedItem
from vitrine.catalog.browse import BrowseFilter, CatalogBrowser, ProductCard
from vitrine.catalog.store import HUMAN, MODEL
from vitrine.classify.dataset import clean_value
from vitrine.classify.predictor import OTHER
from vitrine.index.visual_search import UnknownProductError
from vitrine.runtime import Runtime

SHOP = "shop"  # a value from the shop's own product data
CODE_SUFFIXES = ("_code", "_no", "_id")
CODE_NAMES = {"id", "code", "no", "sku", "ean", "gtin", "upc"}
SIMILAR = 12
COMPLEMENTARY = 8


@dataclass(frozen=True)
class ShopLabel:
    """The value of one of the shop's label fields for a product, and who set it."""

    field: str
    value: str
    source: str  # human | shop | model
    confidence: float | None = None
    model_version: str | None = None
    needs_review: bool = False
    model_value: str | None = None  # the model's value when a person or the data overrule it

    @property
    def who(self) -> str:
        if self.source == HUMAN:
            return "a person"
        if self.source == SHOP:
            return "the shop's product data"
        return f"model {self.model_version}" if self.model_version else "a model"

    @property
    def can_confirm(self) -> bool:
        """A model's value a person may confirm as it is."""
        return self.source == MODEL and self.value != OTHER


def shop_labels(
    attributes: Mapping[str, Any], label_rows: Iterable[Mapping[str, Any]], fields: Iterable[str]
) -> list[ShopLabel]:
    """One row per label field of a product: every field it has a label of, and each of
    ``fields`` (the label fields) its own attributes fill."""
    by_field: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in label_rows:
        by_field.setdefault(row["field"], {})[row["source"]] = row
    for name in fields:
        if clean_value(attributes.get(name)) is not None:
            by_field.setdefault(name, {})
    out = []
    for name, rows in sorted(by_field.items()):
        model = rows.get(MODEL)
        shop_value = clean_value(attributes.get(name))
        if HUMAN in rows:
            value, source = str(rows[HUMAN]["value"]), HUMAN
        elif shop_value is not None:
            value, source = shop_value, SHOP
        elif model is not None:
            out.append(
                ShopLabel(
                    name,
                    str(model["value"]),
                    MODEL,
                    model.get("confidence"),
                    model.get("model_version"),
                    bool(model.get("needs_review")),
                )
            )
            continue
        else:
            continue
        overruled = None if model is None or model["value"] == value else str(model["value"])
        out.append(ShopLabel(name, value, source, model_value=overruled))
    return out


@dataclass(frozen=True)
class AttributeColumns:
    """The product's attributes the page shows, and all of them (for "All attributes")."""

    shown: list[tuple[str, Any]]
    everything: list[tuple[str, Any]]

    @property
    def hidden(self) -> int:
        return len(self.everything) - len(self.shown)


def looks_like_code(name: str) -> bool:
    """A column name of an internal code or id (``style_no``, ``ean``, ``supplier_id``)."""
    lower = name.strip().lower()
    return lower in CODE_NAMES or lower.endswith(CODE_SUFFIXES)


def split_attributes(
    attributes: Mapping[str, Any], chosen: Sequence[str], digit_columns: Mapping[str, bool]
) -> AttributeColumns:
    """The columns the shop chose (in its order), or when it chose none every column but
    code-like ones: a code / id name, or only digits (over the catalog, or in this value
    for a column the catalog sample has not seen)."""
    everything = [(k, v) for k, v in attributes.items() if clean_value(v) is not None]
    if chosen:
        values = dict(everything)
        shown = [(k, values[k]) for k in chosen if k in values]
    else:
        shown = [
            (k, v)
            for k, v in everything
            if not looks_like_code(k)
            and not digit_columns.get(k, not isinstance(v, bool) and str(v).strip().isdigit())
        ]
    return AttributeColumns(shown, everything)


@dataclass
class ProductView:
    """Everything the product page shows."""

    product: dict[str, Any]
    card: ProductCard | None
    labels: list[ShopLabel]
    label_choices: dict[str, list[str]]
    attributes: AttributeColumns
    imagenet: list[dict[str, Any]]
    similar: list[tuple[ProductCard, float]] = field(default_factory=list)
    # None: no recommendation service in this build.
    complementary: list[tuple[RecommendedItem, ProductCard | None]] | None = None


def imagenet_labels(product: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The generic CNN's ImageNet guesses stored with the primary photo's embedding."""
    primary = next((i for i in product["images"] if i["is_primary"]), None)
    for feature in (primary or {}).get("features", []):
        if feature["kind"] == "embedding":
            return [
                {**lb, "model_version": feature["version"]}
                for lb in (feature.get("data") or {}).get("labels", [])
            ]
    return []


class ProductPages:
    """Builds the product page and its labels panel from the catalog and the services."""

    def __init__(
        self, vitrine: Runtime, browser: CatalogBrowser, columns: Sequence[str] = ()
    ) -> None:
        self.vitrine = vitrine
        self.browser = browser
        self.columns = list(columns)

    def labels_of(self, product: Mapping[str, Any]) -> list[ShopLabel]:
        """The shop's labels of a stored product (``CatalogStore.get_product``'s dict)."""
        return shop_labels(
            product.get("attributes") or {},
            product.get("label_rows") or [],
            self.browser.label_field_names(),
        )

    def labels(self, product_id: str) -> tuple[list[ShopLabel], dict[str, list[str]]] | None:
        """A product's labels and the values a person may pick for each field (None: no
        such product)."""
        product = self.vitrine.store.get_product(product_id)
        if product is None:
            return None
        return self.labels_of(product), self.label_choices()

    def label_choices(self) -> dict[str, list[str]]:
        """Label field -> known values: the shop's attribute values, then the labels'."""
        choices = dict(self.browser.attribute_values())
        for name, values in self.browser.label_fields().items():
            choices[name] = list(dict.fromkeys([*values, *choices.get(name, [])]))
        return choices

    def view(
        self, product_id: str, recommender: RecommendationAdmin | None = None
    ) -> ProductView | None:
        """The product page of ``product_id`` (None: no such product)."""
        product = self.vitrine.store.get_product(product_id)
        if product is None:
            return None
        complementary = None
        if recommender is not None:
            items = recommender.complementary(product_id, k=COMPLEMENTARY)
            cards = self._cards([i.product_id for i in items])
            complementary = [(item, cards.get(item.product_id)) for item in items]
        return ProductView(
            product=product,
            card=self.browser.card(product_id),
            labels=self.labels_of(product),
            label_choices=self.label_choices(),
            attributes=split_attributes(
                product.get("attributes") or {}, self.columns, self.browser.digit_columns()
            ),
            imagenet=imagenet_labels(product),
            similar=self._similar(product_id) if product["images"] else [],
            complementary=complementary,
        )

    def _cards(self, ids: Sequence[str]) -> dict[str, ProductCard]:
        if not ids:
            return {}
        found = self.browser.cards(BrowseFilter(), ids=list(dict.fromkeys(ids)), limit=len(ids))
        return {c.id: c for c in found}

    def _similar(self, product_id: str) -> list[tuple[ProductCard, float]]:
        try:
            hits = self.vitrine.search.similar(product_id, SIMILAR)
        except UnknownProductError:
            return []  # its photo is not indexed (yet)
        cards = self._cards([h.product_id for h in hits])
        return [(cards[h.product_id], h.score) for h in hits if h.product_id in cards]
