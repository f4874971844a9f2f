"""In-memory inverted index of product attributes, used to filter visual search.

Each product has a mapping of attribute name to value(s). Values are stored as strings
(see :func:`stringify_values`); a list, tuple or set value makes the attribute
multi-valued. Filters are parsed from short texts::

    masterCategory=Footwear        equality (exact field name, exact value)
    baseColour=Red|Blue            any of several values (OR)
    baseColour!=Red|Blue           has the field, and none of these values
    price<=50                      numeric comparison: <, <=, >, >=

:meth:`AttributeIndex.matching` ANDs a list of filters and returns the matching product
ids, ready to pass as ``allowed`` to :meth:`vitrine.index.VectorIndex.search`.
"""

from __future__ import annotations

import math
import operator
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np

__all__ = [
    "AttributeFilter",
    "AttributeIndex",
    "parse_filter",
    "parse_filters",
    "stringify_values",
]

EQUALITY_OPS: Final = ("=", "!=")
NUMERIC_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_FILTER_RE: Final = re.compile(r"^(?P<field>[^<>=!]+?)\s*(?P<op><=|>=|!=|==|=|<|>)(?P<value>.*)$")
_CACHE_SIZE: Final = 64
_SYNTAX_HINT: Final = (
    "expected FIELD=VALUE[|VALUE...], FIELD!=VALUE[|VALUE...] "
    "or FIELD<op>NUMBER with op one of <, <=, >, >="
)


@dataclass(frozen=True, slots=True)
class AttributeFilter:
    """A parsed filter: ``field op value``.

    ``values`` holds the alternatives for ``=`` / ``!=``; ``number`` the operand of a
    numeric comparison. ``text`` is the filter as written.
    """

    field: str
    op: str
    values: tuple[str, ...] = ()
    number: float | None = None
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.field}{self.op}{'|'.join(self.values) or self.number}"


def parse_filter(text: str) -> AttributeFilter:
    """Parse ``"field=value"``, ``"field=a|b"``, ``"field!=a"`` or ``"field<=50"``.

    Field names and values are matched exactly (case-sensitive); surrounding whitespace
    is ignored. ``==`` is accepted as ``=``.

    Raises:
        ValueError: naming the offending filter text.
    """
    if not isinstance(text, str):
        raise ValueError(f"invalid filter {text!r}: not a string")
    match = _FILTER_RE.match(text.strip())
    if match is None:
        raise ValueError(f"invalid filter {text!r}: {_SYNTAX_HINT}")
    field = match["field"].strip()
    op = "=" if match["op"] == "==" else match["op"]
    raw = match["value"].strip()
    if not field:
        raise ValueError(f"invalid filter {text!r}: empty field name")
    if op in NUMERIC_OPS:
        number = _to_number(raw)
        if number is None:
            raise ValueError(f"invalid filter {text!r}: {op} needs a number, got {raw!r}")
        return AttributeFilter(field, op, number=number, text=text)
    values = tuple(part.strip() for part in raw.split("|"))
    if not raw or any(not v for v in values):
        raise ValueError(f"invalid filter {text!r}: empty value ({_SYNTAX_HINT})")
    return AttributeFilter(field, op, values=tuple(dict.fromkeys(values)), text=text)


def parse_filters(texts: Iterable[str]) -> list[AttributeFilter]:
    """:func:`parse_filter` for each text."""
    return [parse_filter(t) for t in texts]


def stringify_values(value: object) -> tuple[str, ...]:
    """The stored string values for one attribute value.

    None, NaN and empty strings are "missing" (no values). Lists, tuples and sets are
    multi-valued. Booleans become ``"true"``/``"false"``; integral floats lose their
    ``.0`` (``2012.0`` -> ``"2012"``, as produced by pandas for int columns with gaps);
    everything else goes through ``str``.
    """
    if isinstance(value, list | tuple | set | frozenset):
        out: dict[str, None] = {}
        for item in value:
            for s in stringify_values(item):
                out[s] = None
        return tuple(out)
    scalar = _one_string(value)
    return () if scalar is None else (scalar,)


def _one_string(value: object) -> str | None:
    if isinstance(value, np.generic):  # numpy scalars -> Python scalars
        value = value.item()
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < 2**63:
            return str(int(value))
        return repr(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value)
    return text or None


@lru_cache(maxsize=65_536)
def _to_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return None if math.isnan(number) else number


class AttributeIndex:
    """Inverted index ``field -> value -> product ids``; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._by_product: dict[str, dict[str, tuple[str, ...]]] = {}
        self._inverted: dict[str, dict[str, set[str]]] = {}
        # filters -> result of matching_frozen; emptied by every change
        self._cache: dict[frozenset[tuple[object, ...]], frozenset[str]] = {}

    def __len__(self) -> int:
        return len(self._by_product)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._by_product

    def set(self, product_id: str, attributes: Mapping[str, object]) -> None:
        """Replace ``product_id``'s attributes (values stringified; lists are multi-valued)."""
        stored = {
            str(field): values
            for field, value in attributes.items()
            if (values := stringify_values(value))
        }
        with self._lock:
            self._unindex(product_id)
            self._by_product[product_id] = stored
            self._cache.clear()
            for field, values in stored.items():
                by_value = self._inverted.setdefault(field, {})
                for v in values:
                    by_value.setdefault(v, set()).add(product_id)

    def remove(self, product_id: str) -> None:
        """Forget ``product_id`` (no error if unknown)."""
        with self._lock:
            self._unindex(product_id)
            self._by_product.pop(product_id, None)
            self._cache.clear()

    def clear(self) -> None:
        with self._lock:
            self._by_product.clear()
            self._inverted.clear()
            self._cache.clear()

    def get(self, product_id: str) -> dict[str, tuple[str, ...]] | None:
        """The stored (stringified) attributes of a product, or None."""
        with self._lock:
            stored = self._by_product.get(product_id)
            return None if stored is None else dict(stored)

    def fields(self) -> list[str]:
        with self._lock:
            return sorted(self._inverted)

    def values(self, field: str) -> dict[str, int]:
        """Value -> number of products having it, for one field (facet counts)."""
        with self._lock:
            return {v: len(ids) for v, ids in self._inverted.get(field, {}).items()}

    def matching(self, filters: Sequence[AttributeFilter]) -> set[str] | None:
        """Product ids satisfying every filter (AND); None when there are no filters."""
        frozen = self.matching_frozen(filters)
        return None if frozen is None else set(frozen)

    def matching_frozen(self, filters: Sequence[AttributeFilter]) -> frozenset[str] | None:
        """:meth:`matching` as a frozenset, cached until the attributes next change.

        Asking again for the same filters (in any order) returns the same object, which
        :meth:`vitrine.index.VectorIndex.search` recognises as ``allowed``: it then skips
        re-mapping the ids, the main cost of a broadly filtered search.
        """
        if not filters:
            return None
        key = frozenset((f.field, f.op, f.values, f.number) for f in filters)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            sets = [self._matching_one(f) for f in filters]
            sets.sort(key=len)
            result = set(sets[0])
            for other in sets[1:]:
                if not result:
                    break
                result &= other
            frozen = frozenset(result)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = frozen
            return frozen

    def _matching_one(self, flt: AttributeFilter) -> set[str]:
        by_value = self._inverted.get(flt.field, {})
        if flt.op == "=":
            return _union(by_value.get(v, set()) for v in flt.values)
        if flt.op == "!=":
            unwanted = _union(by_value.get(v, set()) for v in flt.values)
            return _union(by_value.values()) - unwanted
        compare = NUMERIC_OPS.get(flt.op)
        if compare is None or flt.number is None:
            raise ValueError(f"invalid filter {str(flt)!r}: unknown operator {flt.op!r}")
        number = flt.number
        return _union(
            ids
            for v, ids in by_value.items()
            if (x := _to_number(v)) is not None and compare(x, number)
        )

    def _unindex(self, product_id: str) -> None:
        old = self._by_product.get(product_id)
        if not old:
            return
        for field, values in old.items():
            by_value = self._inverted.get(field)
            if by_value is None:
                continue
            for v in values:
                ids = by_value.get(v)
                if ids is not None:
                    ids.discard(product_id)
                    if not ids:
                        del by_value[v]
            if not by_value:
                del self._inverted[field]


def _union(sets: Iterable[set[str]]) -> set[str]:
    out: set[str] = set()
    for s in sets:
        out |= s
    return out
