"""Nested fields learned from the data, decoded jointly so that predictions agree.

A field *determines* another when (almost) every value of it occurs with one value of
the other (articleType "Shirts" always has subCategory "Topwear" and masterCategory
"Apparel"). Fields linked that way form a hierarchy; its observed value combinations
are the only answers allowed, and the combination with the highest joint probability
(the product of each head's calibrated probabilities) is chosen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Share of a value's rows that must agree on one parent value (tolerates label noise).
DEPENDENCY_PURITY = 0.98


def determines(child: Mapping[str, str], parent: Mapping[str, str]) -> bool:
    """Whether the child field's value fixes the parent's, on the products with both."""
    pairs = Counter((child[p], parent[p]) for p in child.keys() & parent.keys())
    if not pairs:
        return False
    best: dict[str, int] = {}
    total: Counter[str] = Counter()
    for (c, _), n in pairs.items():
        total[c] += n
        best[c] = max(best.get(c, 0), n)
    agreeing = sum(best.values())
    if len(total) > 0.5 * sum(total.values()):  # nearly one row per value: an id, not a level
        return False
    # A parent with as many values as the child is not coarser: not a hierarchy.
    n_parent = len({p for _, p in pairs})
    return agreeing >= DEPENDENCY_PURITY * sum(total.values()) and n_parent < len(total)


@dataclass
class Hierarchy:
    """Fields from coarse to fine and the value combinations seen in training."""

    fields: list[str]
    combos: list[tuple[str, ...]]

    def to_json(self) -> dict[str, object]:
        return {"fields": self.fields, "combos": [list(c) for c in self.combos]}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Hierarchy:
        return cls(list(data["fields"]), [tuple(c) for c in data["combos"]])  # type: ignore[call-overload]


def learn_hierarchies(values: Mapping[str, Mapping[str, str]]) -> list[Hierarchy]:
    """Group ``values`` (field -> product id -> value) into hierarchies of >= 2 fields."""
    fields = list(values)
    links = {(a, b) for a in fields for b in fields if a != b and determines(values[a], values[b])}
    # Connected components of the dependency graph.
    parent = {f: f for f in fields}

    def root(f: str) -> str:
        while parent[f] != f:
            f = parent[f]
        return f

    for a, b in links:
        parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for f in fields:
        groups.setdefault(root(f), []).append(f)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        # Coarse to fine: fewer distinct values first.
        members.sort(key=lambda f: len(set(values[f].values())))
        shared = set.intersection(*(set(values[f]) for f in members))
        combos = sorted({tuple(values[f][p] for f in members) for p in shared})
        out.append(Hierarchy(members, combos))
    return out


def decode(
    hierarchy: Hierarchy,
    probas: Mapping[str, np.ndarray],
    classes: Mapping[str, Sequence[str]],
    mapping: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The jointly most probable combination for every row.

    ``probas[f]`` are a head's calibrated probabilities (rows x its ``classes[f]``);
    ``mapping[f]`` maps a raw value to the head's class (rare values to "other").
    Returns, per field, the chosen value of each row and its confidence: the marginal
    probability of that value under the joint distribution over allowed combinations.
    """
    mapping = mapping or {}
    n = len(next(iter(probas.values())))
    columns: list[list[int]] = []
    combos: list[tuple[str, ...]] = []
    for combo in hierarchy.combos:
        cols = []
        for f, value in zip(hierarchy.fields, combo, strict=True):
            value = mapping.get(f, {}).get(value, value)
            index = {c: i for i, c in enumerate(classes[f])}.get(value)
            if index is None:
                break
            cols.append(index)
        else:
            if tuple(cols) not in {tuple(c) for c in columns}:
                columns.append(cols)
                combos.append(
                    tuple(classes[f][i] for f, i in zip(hierarchy.fields, cols, strict=True))
                )
    values: dict[str, np.ndarray] = {}
    confidence: dict[str, np.ndarray] = {}
    if not combos:
        for f in hierarchy.fields:
            best = probas[f].argmax(axis=1)
            values[f] = np.asarray(classes[f], dtype=object)[best]
            confidence[f] = probas[f].max(axis=1)
        return values, confidence
    index = np.array(columns, dtype=np.int64)  # combos x fields
    log_joint = np.zeros((n, len(combos)))
    for j, f in enumerate(hierarchy.fields):
        log_joint += np.log(np.clip(probas[f][:, index[:, j]], 1e-12, None))
    log_joint -= log_joint.max(axis=1, keepdims=True)
    joint = np.exp(log_joint)
    joint /= joint.sum(axis=1, keepdims=True)
    best = joint.argmax(axis=1)
    for j, f in enumerate(hierarchy.fields):
        chosen = index[best, j]
        values[f] = np.asarray(classes[f], dtype=object)[chosen]
        same = index[:, j][None, :] == chosen[:, None]
        confidence[f] = (joint * same).sum(axis=1)
    return values, confidence
