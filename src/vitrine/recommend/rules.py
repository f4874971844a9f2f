"""Business rules: which products may be recommended, and how a ranked list is reshaped.

Rules come from the strategy and may be tightened per request (filters). Candidate
rules (availability, categories, attribute filters, price range, excluding what the
customer bought or saw) become a mask over the catalog before ranking; list rules
(boost / bury by attribute, at most N per category, MMR diversity) reorder the ranked
candidates afterwards.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np

from vitrine.index import parse_filter
from vitrine.recommend.data import Dataset, History


class RuleError(ValueError):
    """A rule that cannot be applied; the message names it."""


@dataclass
class Rules:
    """A strategy's business rules: filters, exclusions, boosts, diversity."""

    exclude_purchased: bool = False
    exclude_seen: bool = False
    available_only: bool = True
    include_categories: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)  # field=value, price<=50, ...
    boost: dict[str, float] = field(default_factory=dict)  # filter -> factor > 1
    bury: dict[str, float] = field(default_factory=dict)  # filter -> factor > 1 (divides)
    price_min: float | None = None
    price_max: float | None = None
    max_per_category: int | None = None
    diversity: float = 0.0  # 0: off; up to 1: MMR trades relevance for variety

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Rules:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RuleError(
                f"unknown rules: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        rules = cls(**data)
        rules.validate()
        return rules

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @cached_property
    def cache_key(self) -> str:
        """These rules as a list-cache key part, computed once: rules are never changed
        once made (``merged`` makes new ones)."""
        return json.dumps(self.to_json(), sort_keys=True)

    def validate(self) -> None:
        for name in ("exclude_purchased", "exclude_seen", "available_only"):
            if not isinstance(getattr(self, name), bool):
                raise RuleError(f"rule {name} must be true or false")
        for name in ("include_categories", "exclude_categories", "filters"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RuleError(f"rule {name} must be a list of strings")
        for text in self.filters:
            try:
                parse_filter(text)
            except ValueError as exc:
                raise RuleError(f"rule filters: {exc}") from None
        for name in ("boost", "bury"):
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise RuleError(f"rule {name} must map a filter to a factor")
            for text, factor in value.items():
                try:
                    parse_filter(text)
                except ValueError as exc:
                    raise RuleError(f"rule {name}: {exc}") from None
                if not isinstance(factor, int | float) or not math.isfinite(factor) or factor < 1:
                    raise RuleError(f"rule {name} {text!r}: factor must be a number >= 1")
        for name in ("price_min", "price_max"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or value < 0):
                raise RuleError(f"rule {name} must be a number >= 0")
        if (
            self.price_min is not None
            and self.price_max is not None
            and self.price_min > self.price_max
        ):
            raise RuleError("rule price_min is above price_max")
        if self.max_per_category is not None and (
            not isinstance(self.max_per_category, int) or self.max_per_category < 1
        ):
            raise RuleError("rule max_per_category must be an integer >= 1")
        if not isinstance(self.diversity, int | float) or not 0 <= self.diversity <= 1:
            raise RuleError("rule diversity must be between 0 and 1")

    def merged(self, overrides: Mapping[str, Any] | None) -> Rules:
        """These rules with a request's overrides (filters are added, not replaced)."""
        if not overrides:
            return self
        data = self.to_json()
        for key, value in overrides.items():
            if key == "filters":
                data["filters"] = [*data["filters"], *value]
            else:
                data[key] = value
        return Rules.from_json(data)


def _matching(data: Dataset, text: str) -> np.ndarray:
    ids = data.filters.matching_frozen([parse_filter(text)]) or frozenset()
    mask = np.zeros(data.n_catalog, bool)
    rows = [data.item_index[p] for p in ids if p in data.item_index]
    mask[rows] = True
    return mask


def candidate_mask(rules: Rules, data: Dataset, history: History) -> np.ndarray:
    """Which catalog items may be recommended under these rules."""
    mask = data.listed.copy()
    if rules.available_only:
        mask &= data.available
    if rules.include_categories:
        codes = [data.categories.index(c) for c in rules.include_categories if c in data.categories]
        mask &= np.isin(data.category, codes)
    if rules.exclude_categories:
        codes = [data.categories.index(c) for c in rules.exclude_categories if c in data.categories]
        mask &= ~np.isin(data.category, codes)
    for text in rules.filters:
        mask &= _matching(data, text)
    if rules.price_min is not None:
        mask &= data.price >= rules.price_min
    if rules.price_max is not None:
        mask &= data.price <= rules.price_max
    if rules.exclude_seen or rules.exclude_purchased:
        chosen = history.items if rules.exclude_seen else history.items[history.purchases]
        chosen = chosen[chosen < data.n_catalog]
        mask[chosen] = False
    return mask


def reshape(rules: Rules, data: Dataset, items: Sequence[int], k: int) -> list[int]:
    """Boost / bury, then pick ``k`` with at most N per category and MMR diversity."""
    if not len(items):
        return []
    n = len(items)
    # Rank-based relevance: comparable across algorithms whatever their score scale.
    relevance = 1.0 - np.arange(n) / n
    ids = np.asarray(items, np.int64)
    for text, factor in rules.boost.items():
        relevance = np.where(_matching(data, text)[ids], relevance * factor, relevance)
    for text, factor in rules.bury.items():
        relevance = np.where(_matching(data, text)[ids], relevance / factor, relevance)
    order = np.argsort(-relevance, kind="stable")
    ids, relevance = ids[order], relevance[order]
    per_category: dict[int, int] = {}
    chosen: list[int] = []
    lam = 1.0 - rules.diversity
    emb = data.embeddings
    remaining = list(range(n))
    while remaining and len(chosen) < k:
        if rules.diversity > 0 and chosen:
            cand = ids[remaining]
            redundancy = (emb[cand] @ emb[chosen].T).max(axis=1)
            mmr = lam * relevance[remaining] - (1 - lam) * redundancy
            pick = remaining[int(np.argmax(mmr))]
        else:
            pick = remaining[0]
        remaining.remove(pick)
        item = int(ids[pick])
        cat = int(data.category[item])
        if rules.max_per_category is not None and cat >= 0:
            if per_category.get(cat, 0) >= rules.max_per_category:
                continue
            per_category[cat] = per_category.get(cat, 0) + 1
        chosen.append(item)
    return chosen
