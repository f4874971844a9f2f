"""Strategies: named recommendation configurations kept in the database.

A strategy names an algorithm with its parameters, aspect weights (for visual
similarity), business rules and a fallback chain (algorithms that fill the list when
the first one has too little to say, e.g. for a customer with no history). A strategy
may instead split customers between other strategies (an A/B test): ``variants`` maps
strategy names to shares, and a stable hash of the customer id picks one, so a customer
always sees the same variant. A paused A/B test (``paused``) splits no one: its own
configuration (the "parent" of the test) is served until it is resumed.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, delete, select

from vitrine.catalog.models import RecommendationStrategy, utcnow
from vitrine.index.fusion import DEFAULT_WEIGHTS
from vitrine.recommend.als_factors import AlsFactors
from vitrine.recommend.base import Recommender
from vitrine.recommend.cf import ALS, Cooccurrence
from vitrine.recommend.complementary import Complementary
from vitrine.recommend.hybrid import Hybrid
from vitrine.recommend.popularity import Popularity, Rebuy
from vitrine.recommend.rules import RuleError, Rules
from vitrine.recommend.visual import VisualProfile, VisualSimilar

ALGORITHMS: dict[str, Callable[..., Recommender]] = {
    "hybrid": Hybrid,
    "als": ALS,
    "als_factors": AlsFactors,
    "cooccurrence": Cooccurrence,
    "visual_profile": VisualProfile,
    "similar": VisualSimilar,
    "popularity": lambda **kw: Popularity(**{"half_life_days": None, **kw}),
    "trending": lambda **kw: Popularity(**{"half_life_days": 7.0, **kw}),
    "rebuy": Rebuy,
    "complementary": Complementary,
}
ASPECT_KINDS = {"embedding", "color", "texture", "shape", "pattern"}
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-.")


class StrategyError(ValueError):
    """An invalid strategy; the message names the field."""


@dataclass
class Strategy:
    """A named configuration: algorithm, parameters, aspect weights, rules, fallbacks, A/B arms."""

    name: str
    algorithm: str = "hybrid"
    params: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    rules: Rules = field(default_factory=Rules)
    fallback: list[str] = field(default_factory=lambda: ["visual_profile", "trending"])
    variants: dict[str, float] = field(default_factory=dict)
    description: str = ""
    paused: bool = False  # an A/B test on hold: its own configuration is served

    @classmethod
    def from_json(cls, name: str, config: Mapping[str, Any], description: str = "") -> Strategy:
        if not name or len(name) > 64 or not set(name) <= NAME_CHARS:
            raise StrategyError(
                f"strategy name {name!r} must be 1-64 characters of a-z, 0-9, _ - ."
            )
        known = {"algorithm", "params", "weights", "rules", "fallback", "variants", "paused"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise StrategyError(f"unknown strategy fields: {', '.join(unknown)}")
        try:
            rules = Rules.from_json(config.get("rules"))
        except (RuleError, TypeError) as exc:
            raise StrategyError(str(exc)) from None
        strategy = cls(
            name=name,
            algorithm=config.get("algorithm", "hybrid"),
            params=dict(config.get("params") or {}),
            weights={k: float(v) for k, v in (config.get("weights") or {}).items()},
            rules=rules,
            fallback=list(config.get("fallback", ["visual_profile", "trending"])),
            variants={k: float(v) for k, v in (config.get("variants") or {}).items()},
            description=description,
            paused=config.get("paused", False),
        )
        strategy.validate()
        return strategy

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "params": self.params,
            "weights": self.weights,
            "rules": self.rules.to_json(),
            "fallback": self.fallback,
            "variants": self.variants,
            "paused": self.paused,
        }

    @cached_property
    def cache_key(self) -> str:
        """The whole configuration as a list-cache key part, computed once: a strategy is
        never changed once made (a new configuration is a new object)."""
        return json.dumps({"name": self.name, **self.to_json()}, sort_keys=True)

    def validate(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise StrategyError(
                f"unknown algorithm {self.algorithm!r}; known: {', '.join(ALGORITHMS)}"
            )
        try:
            ALGORITHMS[self.algorithm](**self.params)
        except TypeError as exc:
            raise StrategyError(f"params of {self.algorithm}: {exc}") from None
        for name in self.fallback:
            if name not in ALGORITHMS:
                raise StrategyError(f"unknown fallback algorithm {name!r}")
        for kind, weight in self.weights.items():
            if kind not in ASPECT_KINDS:
                raise StrategyError(
                    f"unknown aspect weight {kind!r}; known: {', '.join(sorted(ASPECT_KINDS))}"
                )
            if not math.isfinite(weight) or weight < 0:
                raise StrategyError(f"aspect weight {kind!r} must be a number >= 0")
        if self.weights and not any(self.weights.values()):
            raise StrategyError("aspect weights are all zero")
        for name, share in self.variants.items():
            if name == self.name:
                raise StrategyError("a strategy cannot be its own variant")
            if not math.isfinite(share) or share <= 0:
                raise StrategyError(f"variant {name!r} share must be a number > 0")
        if not isinstance(self.paused, bool):
            raise StrategyError("paused must be true or false")
        if self.paused and not self.variants:
            raise StrategyError("only an A/B test (a strategy with variants) can be paused")

    @property
    def splits(self) -> bool:
        """Whether this strategy sends customers to its variants (a running A/B test)."""
        return bool(self.variants) and not self.paused

    @property
    def model_key(self) -> str:
        """The trained model this strategy uses: the algorithm, and a hash of its params."""
        if not self.params:
            return self.algorithm
        text = json.dumps(self.params, sort_keys=True, default=str)
        return f"{self.algorithm}#{hashlib.sha256(text.encode()).hexdigest()[:10]}"

    def variant_for(self, user_id: str) -> str | None:
        """The variant a customer sees (stable: the same customer, the same variant); None
        when this is no A/B test or a paused one."""
        if not self.splits:
            return None
        digest = hashlib.sha256(f"{self.name}\x1f{user_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * sum(self.variants.values())
        for name, share in sorted(self.variants.items()):
            point -= share
            if point < 0:
                return name
        return sorted(self.variants)[-1]


def builtin_strategies(default_algorithm: str = "hybrid") -> dict[str, Strategy]:
    """What a new shop starts with; ``default`` uses the algorithm that won the offline
    evaluation (see README "Recommendations")."""
    return {
        "default": Strategy(
            "default", default_algorithm, description="the best algorithm of the offline evaluation"
        ),
        "hybrid": Strategy("hybrid", "hybrid", description="two-stage: sources + LambdaRank"),
        "als": Strategy("als", "als", description="implicit ALS"),
        "visual": Strategy(
            "visual",
            "visual_profile",
            description="the customer's visual taste",
            rules=Rules(exclude_purchased=True),
        ),
        "similar": Strategy(
            "similar",
            "similar",
            weights=dict((k, v) for k, v in DEFAULT_WEIGHTS.items() if k in ASPECT_KINDS and v > 0),
            description="visually similar, aspect-weighted",
        ),
        "trending": Strategy(
            "trending", "trending", fallback=["popularity"], description="time-decayed popularity"
        ),
        "complementary": Strategy(
            "complementary",
            "complementary",
            fallback=["similar", "trending"],
            description="complete the look: bought together across categories",
        ),
    }


class StrategyStore:
    """The strategies table; the built-in strategies are written on first use."""

    CACHE_SECONDS = 2.0  # other processes' edits are seen within this

    def __init__(self, engine: Engine, default_algorithm: str = "hybrid") -> None:
        self.engine = engine
        self.default_algorithm = default_algorithm
        self._cache: dict[str, tuple[float, Strategy | None]] = {}

    def ensure_builtins(self) -> None:
        with self.engine.begin() as conn:
            present = set(conn.scalars(select(RecommendationStrategy.name)))
            now = utcnow()
            rows = [
                {
                    "name": s.name,
                    "description": s.description,
                    "config": s.to_json(),
                    "created_at": now,
                    "updated_at": now,
                }
                for s in builtin_strategies(self.default_algorithm).values()
                if s.name not in present
            ]
            if rows:
                conn.execute(RecommendationStrategy.__table__.insert(), rows)

    def list(self) -> list[Strategy]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    RecommendationStrategy.name,
                    RecommendationStrategy.config,
                    RecommendationStrategy.description,
                ).order_by(RecommendationStrategy.name)
            ).all()
        return [Strategy.from_json(n, c, d or "") for n, c, d in rows]

    def created_times(self) -> dict[str, datetime]:
        """When each strategy (or A/B test) was created."""
        table = RecommendationStrategy.__table__
        with self.engine.connect() as conn:
            return dict(conn.execute(select(table.c.name, table.c.created_at)).all())

    def get(self, name: str) -> Strategy | None:
        """One strategy (cached for a moment: it is read on every request)."""
        cached = self._cache.get(name)
        if cached is not None and time.monotonic() - cached[0] < self.CACHE_SECONDS:
            return cached[1]
        strategy = self._read(name)
        self._cache[name] = (time.monotonic(), strategy)
        return strategy

    def _read(self, name: str) -> Strategy | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(RecommendationStrategy.config, RecommendationStrategy.description).where(
                    RecommendationStrategy.name == name
                )
            ).first()
        return None if row is None else Strategy.from_json(name, row[0], row[1] or "")

    def put(self, strategy: Strategy) -> None:
        strategy.validate()
        self._cache.clear()
        known = {s.name for s in self.list()} | {strategy.name}
        for variant in strategy.variants:
            if variant not in known:
                raise StrategyError(f"variant {variant!r} is not a strategy")
        now = utcnow()
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(RecommendationStrategy.name).where(
                    RecommendationStrategy.name == strategy.name
                )
            ).first()
            table = RecommendationStrategy.__table__
            values = {
                "config": strategy.to_json(),
                "description": strategy.description,
                "updated_at": now,
            }
            if exists:
                conn.execute(table.update().where(table.c.name == strategy.name).values(**values))
            else:
                conn.execute(table.insert().values(name=strategy.name, created_at=now, **values))

    def delete(self, name: str) -> bool:
        self._cache.clear()
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    delete(RecommendationStrategy).where(RecommendationStrategy.name == name)
                ).rowcount
                > 0
            )
