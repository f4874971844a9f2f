"""The strategy editor's form: an engine configuration as form values, and back.

The editor shows every business rule the engine knows, the tunable parameters of the
chosen algorithm only (:mod:`~vitrine.recommend.algorithm_params`) and the aspect
weights only for the algorithm that reads them. Form values are kept as the person typed
them, so that a form with an error is shown again as it was, the error next to it.

A form that carries ``editor=full`` is the whole editor: an unchecked box is off. Any
other post (a script sending a few fields) changes only the fields it sends.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vitrine.recommend.algorithm_params import params_of, uses_aspect_weights
from vitrine.recommend.strategies import ALGORITHMS

ASPECTS = ("color", "texture", "shape", "pattern", "embedding")
FLAGS = ("exclude_purchased", "exclude_seen", "available_only")
LISTS = ("include_categories", "exclude_categories")
NUMBERS = ("price_min", "price_max", "max_per_category", "diversity")
FACTORS = ("boost", "bury")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass
class StrategyForm:
    """The editor's values (strings, as typed) for one strategy."""

    name: str
    values: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def algorithm(self) -> str:
        return self.values.get("algorithm", "")

    @classmethod
    def from_config(
        cls, name: str, config: Mapping[str, Any], description: str = ""
    ) -> StrategyForm:
        """The form of a stored strategy (the engine's ``to_json`` shape)."""
        rules = config.get("rules") or {}
        params = config.get("params") or {}
        weights = config.get("weights") or {}
        algorithm = str(config.get("algorithm", ""))
        values = {
            "algorithm": algorithm,
            "fallback": ", ".join(config.get("fallback") or []),
            "rule:filters": "\n".join(rules.get("filters") or []),
        }
        for p in params_of(algorithm):
            values[f"param:{p.name}"] = _text(params.get(p.name, p.default))
        for aspect in ASPECTS:
            values[f"aspect:{aspect}"] = _text(weights.get(aspect, 0))
        for flag in FLAGS:
            values[f"rule:{flag}"] = "on" if rules.get(flag) else ""
        for key in LISTS:
            values[f"rule:{key}"] = ", ".join(rules.get(key) or [])
        for key in NUMBERS:
            values[f"rule:{key}"] = _text(rules.get(key))
        for key in FACTORS:
            values[f"rule:{key}"] = "\n".join(
                f"{text} {_text(factor)}" for text, factor in (rules.get(key) or {}).items()
            )
        return cls(name, values, description)

    @classmethod
    def from_post(
        cls, name: str, form: Mapping[str, Any], current: Mapping[str, Any], description: str
    ) -> StrategyForm:
        """The posted values over the current ones (see the module's note on partial posts)."""
        base = cls.from_config(name, current, description)
        full = form.get("editor") == "full"
        values = dict(base.values)
        for key in list(values) + [k for k in form if isinstance(k, str) and ":" in k]:
            if key in form:
                values[key] = str(form.get(key) or "").strip()
            elif full and key.removeprefix("rule:") in FLAGS:
                values[key] = ""
        for key in ("algorithm", "fallback"):
            if key in form:
                values[key] = str(form.get(key) or "").strip()
        if values["algorithm"] != base.algorithm:  # another algorithm: its own parameters
            for p in params_of(values["algorithm"]):
                if f"param:{p.name}" not in form:  # not the old one's of the same name
                    values[f"param:{p.name}"] = _text(p.default)
        text = str(form["description"]).strip() if "description" in form else description
        return cls(name, values, text)

    def to_config(self, current: Mapping[str, Any]) -> dict[str, Any]:
        """The engine configuration (ValueError naming the field that is wrong); what the
        form does not show (other parameters, A/B arms) is kept from ``current``."""
        v = self.values
        algorithm = self.algorithm
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {algorithm!r}")
        fallback = [a.strip() for a in v.get("fallback", "").split(",") if a.strip()]
        for name in fallback:
            if name not in ALGORITHMS:
                raise ValueError(f"unknown algorithm {name!r} in the fallback chain")
        same = current.get("algorithm") == algorithm
        shown = {p.name for p in params_of(algorithm)}
        params = {k: x for k, x in (current.get("params") or {}).items() if same and k not in shown}
        for p in params_of(algorithm):
            value = p.parse(v.get(f"param:{p.name}", ""))
            if value is not None and value != p.default:
                params[p.name] = value
        weights = dict(current.get("weights") or {})
        if uses_aspect_weights(algorithm):
            weights = {}
            for aspect in ASPECTS:
                weight = _number(v.get(f"aspect:{aspect}", ""), f"aspect weight {aspect}")
                if weight:
                    weights[aspect] = weight
        rules: dict[str, Any] = {flag: v.get(f"rule:{flag}") == "on" for flag in FLAGS}
        for key in LISTS:
            rules[key] = [c.strip() for c in v.get(f"rule:{key}", "").split(",") if c.strip()]
        rules["filters"] = [f.strip() for f in v.get("rule:filters", "").splitlines() if f.strip()]
        for key in FACTORS:
            rules[key] = _factors(v.get(f"rule:{key}", ""), key)
        for key in ("price_min", "price_max"):
            rules[key] = _number(v.get(f"rule:{key}", ""), key.replace("_", " "), None)
        per_category = v.get("rule:max_per_category", "").strip()
        if per_category and not per_category.isdigit():
            raise ValueError("max per category must be a whole number")
        rules["max_per_category"] = int(per_category) if per_category else None
        rules["diversity"] = _number(v.get("rule:diversity", ""), "diversity")
        return {
            "algorithm": algorithm,
            "params": params,
            "weights": weights,
            "rules": rules,
            "fallback": fallback,
            "variants": dict(current.get("variants") or {}),
            "paused": bool(current.get("paused", False)),
        }


def _number(raw: str, what: str, empty: float | None = 0.0) -> Any:
    text = raw.strip()
    if not text:
        return empty
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number")
    if value < 0:
        raise ValueError(f"{what} must not be negative")
    return value


def _factors(raw: str, key: str) -> dict[str, float]:
    """Lines of ``filter factor`` (e.g. ``baseColour=Black 1.5``)."""
    out: dict[str, float] = {}
    for line in raw.splitlines():
        if not line.strip():
            continue
        parts = line.strip().rsplit(None, 1)
        try:
            factor = float(parts[1]) if len(parts) == 2 else math.nan
        except ValueError:
            factor = math.nan
        if not math.isfinite(factor):
            raise ValueError(
                f"{key}: {line.strip()!r} needs a filter and a factor, e.g. baseColour=Black 1.5"
            )
        out[parts[0]] = factor
    return out
