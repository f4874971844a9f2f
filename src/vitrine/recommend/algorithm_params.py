"""The parameters a person may tune per algorithm, for editors of strategies.

Each algorithm of :data:`~vitrine.recommend.strategies.ALGORITHMS` takes keyword
parameters; these are the ones worth offering in a form, with their defaults and bounds
(what the algorithm classes use when a strategy gives none). Parameters not listed here
(the hybrid's source sizes, a path to ALS factors) are kept as stored. Only the visually
similar algorithm reads a strategy's aspect weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from vitrine.recommend.hybrid import WINDOWS


@dataclass(frozen=True)
class Param:
    """One tunable parameter: its name, kind ("int" or "float"), default and bounds.

    A default of None means "off" (e.g. no recency decay). An empty field is the default.
    """

    name: str
    kind: str
    default: float | int | None
    minimum: float
    maximum: float
    help: str

    def parse(self, raw: str) -> float | int | None:
        """The value of a form field (ValueError naming the parameter when it is bad)."""
        text = raw.strip()
        if not text:
            return self.default
        try:
            value: float | int = int(text) if self.kind == "int" else float(text)
        except ValueError:
            kind = "a whole number" if self.kind == "int" else "a number"
            raise ValueError(f"{self.name} must be {kind}, not {text!r}") from None
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"{self.name} must be between {self.minimum:g} and {self.maximum:g}")
        return value


HALF_LIFE = "recency: events lose half their weight after this many days"
PARAMS: dict[str, tuple[Param, ...]] = {
    "hybrid": (
        Param("windows", "int", WINDOWS, 1, 60, "past training windows of the ranker"),
        Param("label_days", "float", 28.0, 1, 365, "days after each window that count as bought"),
    ),
    "als": (
        Param("factors", "int", 64, 4, 512, "latent factors"),
        Param("regularization", "float", 0.05, 0, 10, "L2 regularization"),
        Param("iterations", "int", 15, 1, 100, "alternating least squares passes"),
        Param("alpha", "float", 10.0, 0, 1000, "confidence of an interaction"),
        Param("half_life_days", "float", None, 1, 3650, HALF_LIFE + " (empty: no decay)"),
    ),
    "als_factors": (),
    "cooccurrence": (
        Param("half_life_days", "float", 60.0, 1, 3650, HALF_LIFE),
        Param("min_count", "int", 1, 1, 1000, "customers that must share a pair"),
        Param("neighbours", "int", 500, 0, 100_000, "strongest pairs kept per product (0: all)"),
    ),
    "visual_profile": (
        Param("half_life_days", "float", 30.0, 1, 3650, HALF_LIFE),
        Param("max_interests", "int", 3, 1, 20, "separate looks a customer may have"),
        Param("max_items", "int", 50, 1, 1000, "latest items the profile is made of"),
    ),
    "similar": (
        Param("recent", "int", 10, 1, 200, "latest items of the customer that are matched"),
        Param("half_life_days", "float", 30.0, 1, 3650, HALF_LIFE),
        Param("pool", "int", 200, 10, 5000, "neighbours looked up per item"),
    ),
    "popularity": (
        Param("window_days", "float", None, 1, 3650, "only the last N days (empty: all time)"),
    ),
    "trending": (
        Param("half_life_days", "float", 7.0, 0.5, 3650, HALF_LIFE),
        Param("window_days", "float", None, 1, 3650, "only the last N days (empty: all time)"),
    ),
    "rebuy": (Param("half_life_days", "float", 30.0, 1, 3650, HALF_LIFE),),
    "complementary": (
        Param("window_days", "float", 14.0, 1, 365, "days between purchases that go together"),
        Param("neighbours", "int", 20, 1, 500, "complements kept per product"),
    ),
}
USES_ASPECT_WEIGHTS = frozenset({"similar"})


def params_of(algorithm: str) -> tuple[Param, ...]:
    """The tunable parameters of an algorithm (none for an unknown one)."""
    return PARAMS.get(algorithm, ())


def uses_aspect_weights(algorithm: str) -> bool:
    return algorithm in USES_ASPECT_WEIGHTS
