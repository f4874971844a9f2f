"""A/B tests of strategies: their life (start, pause, split, stop, winner) and their reading.

An A/B test is a strategy whose ``variants`` split customers between two strategies
(arm A and arm B) by a stable hash of the customer id; the storefront asks for the
test's name (``GET /v1/users/{id}/recommendations?strategy=NAME``). The test's own
configuration, its *parent*, is arm A's as it was when the test started: it is what the
test serves while paused, and after it is stopped. Declaring a winner makes the winner's
configuration the parent's and ends the test, so the storefront keeps calling the same
name and gets the winner.

Each arm is read from the lists served under its name since the test began: impressions
(lists served), clicks (lists with an attributed click) and conversions (lists with an
attributed purchase), with 95 % Wilson score intervals; the difference in click-through
has Newcombe's interval (built from the two Wilson intervals). A verdict is given only
past a minimum sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vitrine.recommend.strategies import Strategy, StrategyError, StrategyStore

Z95 = 1.959964
MIN_IMPRESSIONS = 1_000  # per arm, before a verdict
MIN_CLICKS = 30  # per arm, before a verdict
PREFIX = "A/B test: "


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (None without trials)."""
    if trials <= 0:
        return None
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int
) -> tuple[float, float, float] | None:
    """B's proportion minus A's, with Newcombe's hybrid score interval (method 10)."""
    ci_a, ci_b = wilson(successes_a, trials_a), wilson(successes_b, trials_b)
    if ci_a is None or ci_b is None:
        return None
    p_a, p_b = successes_a / trials_a, successes_b / trials_b
    diff = p_b - p_a
    low = diff - math.sqrt((p_b - ci_b[0]) ** 2 + (ci_a[1] - p_a) ** 2)
    high = diff + math.sqrt((ci_b[1] - p_b) ** 2 + (p_a - ci_a[0]) ** 2)
    return diff, low, high


@dataclass(frozen=True)
class Arm:
    """One arm of a test: its strategy, share of customers and what it was shown doing."""

    strategy: str
    share: float
    impressions: int
    clicks: int
    conversions: int

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None

    @property
    def ctr_ci(self) -> tuple[float, float] | None:
        return wilson(self.clicks, self.impressions)

    @property
    def conversion(self) -> float | None:
        return self.conversions / self.impressions if self.impressions else None

    @property
    def conversion_ci(self) -> tuple[float, float] | None:
        return wilson(self.conversions, self.impressions)


@dataclass(frozen=True)
class Verdict:
    """What the numbers say: ``decided`` only past the minimum sample and when the
    interval of the difference excludes zero; ``better`` is "A", "B" or None."""

    text: str
    decided: bool
    better: str | None
    diff: float | None = None
    low: float | None = None
    high: float | None = None


def _pts(value: float) -> str:
    return f"{100 * value:+.1f} pts"


def verdict(
    a: Arm, b: Arm, min_impressions: int = MIN_IMPRESSIONS, min_clicks: int = MIN_CLICKS
) -> Verdict:
    """A plain sentence on click-through: which arm is better, or what is still missing."""
    more_impressions = max(0, min_impressions - a.impressions) + max(
        0, min_impressions - b.impressions
    )
    more_clicks = max(0, min_clicks - a.clicks) + max(0, min_clicks - b.clicks)
    if more_impressions or more_clicks:
        missing = []
        if more_impressions:
            missing.append(f"{more_impressions:,} more impressions")
        if more_clicks:
            missing.append(f"{more_clicks:,} more clicks")
        return Verdict(
            f"Not enough data yet: {' and '.join(missing)} "
            f"(at least {min_impressions:,} impressions and {min_clicks} clicks per arm).",
            False,
            None,
        )
    found = newcombe(a.clicks, a.impressions, b.clicks, b.impressions)
    assert found is not None  # both arms have impressions here
    diff, low, high = found
    if low > 0:
        text = f"B is better: CTR {_pts(diff)}, 95 % CI {_pts(low)} to {_pts(high)}."
        return Verdict(text, True, "B", diff, low, high)
    if high < 0:
        text = f"A is better: CTR {_pts(-diff)}, 95 % CI {_pts(-high)} to {_pts(-low)}."
        return Verdict(text, True, "A", diff, low, high)
    text = (
        f"No clear difference: B's CTR {_pts(diff)} against A, "
        f"95 % CI {_pts(low)} to {_pts(high)} includes zero."
    )
    return Verdict(text, False, None, diff, low, high)


@dataclass(frozen=True)
class ABTest:
    """A test as the admin sees it: its arms, state, parent and verdict."""

    name: str
    a: Arm
    b: Arm
    paused: bool
    parent_algorithm: str
    started: datetime | None
    verdict: Verdict

    @property
    def split(self) -> float:
        """The share of customers sent to B."""
        return self.b.share


def arms_of(test: Strategy) -> tuple[str, str]:
    """Arms A and B of a test, in the order it was started with."""
    a, b = sorted(test.variants)
    named = test.description.removeprefix(PREFIX).split(" vs ")
    if len(named) == 2 and set(named) == set(test.variants):
        a, b = named
    return a, b


Stats = Callable[[datetime | None], list[dict[str, Any]]]


class UnknownTest(LookupError):
    """There is no A/B test of that name (a 404, where a bad value is a ValueError)."""


class ABTests:
    """Starting, pausing, re-splitting, stopping and deciding A/B tests, and reading them."""

    def __init__(self, strategies: StrategyStore, stats: Stats) -> None:
        self.strategies = strategies
        self.stats = stats  # since -> per-strategy served / clicked_lists / converted_lists

    def _test(self, name: str) -> Strategy:
        found = self.strategies.get(name)
        if found is None or len(found.variants) != 2:
            raise UnknownTest(f"there is no A/B test named {name!r}")
        return found

    def start(self, name: str, a: str, b: str, split: float) -> Strategy:
        """A new test; its parent is a copy of A's configuration."""
        if a == b:
            raise StrategyError("an A/B test needs two different strategies")
        _check_split(split)
        if self.strategies.get(name) is not None:
            raise StrategyError(f"there is already a strategy or test named {name!r}")
        arms = []
        for arm in (a, b):
            found = self.strategies.get(arm)
            if found is None or found.variants:
                raise StrategyError(f"{arm!r} is not a strategy")
            arms.append(found)
        config = {**arms[0].to_json(), "variants": {a: 1.0 - split, b: split}, "paused": False}
        test = Strategy.from_json(name, config, f"{PREFIX}{a} vs {b}")
        self.strategies.put(test)
        return test

    def set_paused(self, name: str, paused: bool) -> None:
        """Pause (the parent is served to everyone) or resume a test."""
        test = self._test(name)
        self.strategies.put(
            Strategy.from_json(name, {**test.to_json(), "paused": paused}, test.description)
        )

    def set_split(self, name: str, split: float) -> None:
        """Send this share of customers to B (customers may change arm)."""
        _check_split(split)
        test = self._test(name)
        a, b = arms_of(test)
        config = {**test.to_json(), "variants": {a: 1.0 - split, b: split}}
        self.strategies.put(Strategy.from_json(name, config, test.description))

    def stop(self, name: str) -> Strategy:
        """End the test: its name serves the parent configuration from now on."""
        test = self._test(name)
        a, b = arms_of(test)
        config = {**test.to_json(), "variants": {}, "paused": False}
        description = f"ended A/B test {a} vs {b}; serves {a}'s configuration of its start"
        ended = Strategy.from_json(name, config, description)
        self.strategies.put(ended)
        return ended

    def declare_winner(self, name: str, winner: str) -> Strategy:
        """End the test with the winner's configuration (``winner``: its strategy name)."""
        test = self._test(name)
        a, b = arms_of(test)
        if winner not in (a, b):
            raise StrategyError(f"{winner!r} is not an arm of {name!r}: choose {a!r} or {b!r}")
        arm = self.strategies.get(winner)
        if arm is None:
            raise StrategyError(f"strategy {winner!r} no longer exists")
        config = {**arm.to_json(), "variants": {}, "paused": False}
        description = f"winner {winner} of A/B test {a} vs {b}"
        decided = Strategy.from_json(name, config, description)
        self.strategies.put(decided)
        return decided

    def using(self, strategy: str) -> list[str]:
        """The tests that have this strategy as an arm."""
        return [s.name for s in self.strategies.list() if strategy in s.variants]

    def list(self) -> list[ABTest]:
        """Every test with its arms' numbers since it started (one stats query per test)."""
        started = self.strategies.created_times()
        out = []
        for test in self.strategies.list():
            if len(test.variants) != 2:
                continue
            a, b = arms_of(test)
            since = started.get(test.name)
            stats = {e["strategy"]: e for e in self.stats(since)}
            total = sum(test.variants.values())
            arm_a, arm_b = (
                _arm(name, test.variants[name] / total, stats.get(name, {})) for name in (a, b)
            )
            out.append(
                ABTest(
                    test.name,
                    arm_a,
                    arm_b,
                    test.paused,
                    test.algorithm,
                    since,
                    verdict(arm_a, arm_b),
                )
            )
        return out


def _arm(name: str, share: float, stats: dict[str, Any]) -> Arm:
    served = int(stats.get("served", 0))
    purchases = stats.get("converted_lists", stats.get("events", {}).get("purchase", 0))
    return Arm(
        name,
        share,
        served,
        int(stats.get("clicked_lists", 0)),
        min(int(purchases), served),
    )


def _check_split(split: float) -> None:
    if not math.isfinite(split) or not 0 < split < 1:
        raise StrategyError("the share of customers sent to B must be between 1 % and 99 %")
