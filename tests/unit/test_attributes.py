"""Unit tests for vitrine.index.attributes (AttributeIndex and filter parsing)."""

from __future__ import annotations

import numpy as np
import pytest

from vitrine.index import AttributeFilter, AttributeIndex, parse_filter, parse_filters
from vitrine.index.attributes import stringify_values


@pytest.fixture
def attrs() -> AttributeIndex:
    index = AttributeIndex()
    index.set("001", {"masterCategory": "Footwear", "baseColour": "Red", "price": 40})
    index.set("002", {"masterCategory": "Footwear", "baseColour": "Blue", "price": 55.5})
    index.set("003", {"masterCategory": "Apparel", "baseColour": "Red", "price": "12"})
    index.set("004", {"masterCategory": "Apparel", "baseColour": ["Red", "White"], "year": 2012.0})
    index.set("005", {"masterCategory": "Accessories", "baseColour": None, "price": "n/a"})
    return index


def match(index: AttributeIndex, *texts: str) -> set[str] | None:
    return index.matching(parse_filters(texts))


def test_no_filters_means_no_restriction(attrs: AttributeIndex) -> None:
    assert attrs.matching([]) is None


def test_equality_and_or(attrs: AttributeIndex) -> None:
    assert match(attrs, "masterCategory=Footwear") == {"001", "002"}
    assert match(attrs, "baseColour=Red|Blue") == {"001", "002", "003", "004"}
    assert match(attrs, "baseColour=White") == {"004"}  # multi-valued
    assert match(attrs, "baseColour=Green") == set()
    assert match(attrs, "nosuchfield=x") == set()


def test_and_across_filters(attrs: AttributeIndex) -> None:
    assert match(attrs, "masterCategory=Apparel", "baseColour=Red") == {"003", "004"}
    assert match(attrs, "masterCategory=Footwear", "baseColour=Red") == {"001"}
    assert match(attrs, "masterCategory=Footwear", "baseColour=White") == set()


def test_exact_field_and_value_matching(attrs: AttributeIndex) -> None:
    assert match(attrs, "mastercategory=Footwear") == set()
    assert match(attrs, "masterCategory=footwear") == set()
    assert match(attrs, " masterCategory = Footwear ") == {"001", "002"}


def test_not_equal(attrs: AttributeIndex) -> None:
    assert match(attrs, "baseColour!=Red") == {"002"}
    assert match(attrs, "masterCategory!=Apparel|Accessories") == {"001", "002"}


def test_numeric_comparisons(attrs: AttributeIndex) -> None:
    assert match(attrs, "price<=40") == {"001", "003"}
    assert match(attrs, "price<40") == {"003"}
    assert match(attrs, "price>40") == {"002"}
    assert match(attrs, "price>=12", "masterCategory=Footwear") == {"001", "002"}
    assert match(attrs, "year>=2012") == {"004"}
    assert match(attrs, "year=2012") == {"004"}  # integral float stored as "2012"
    assert match(attrs, "price=55.5") == {"002"}


def test_set_replaces_and_remove(attrs: AttributeIndex) -> None:
    attrs.set("001", {"masterCategory": "Apparel"})
    assert match(attrs, "masterCategory=Footwear") == {"002"}
    assert match(attrs, "price<=40") == {"003"}
    assert attrs.get("001") == {"masterCategory": ("Apparel",)}
    attrs.remove("001")
    attrs.remove("unknown")
    assert "001" not in attrs and len(attrs) == 4
    assert match(attrs, "masterCategory=Apparel") == {"003", "004"}
    assert attrs.values("baseColour") == {"Red": 2, "Blue": 1, "White": 1}
    assert "masterCategory" in attrs.fields()


def test_result_is_a_copy(attrs: AttributeIndex) -> None:
    result = match(attrs, "masterCategory=Footwear")
    assert result is not None
    result.clear()
    assert match(attrs, "masterCategory=Footwear") == {"001", "002"}


def test_parse_filter_forms() -> None:
    assert parse_filter("masterCategory=Footwear") == AttributeFilter(
        "masterCategory", "=", ("Footwear",), text="masterCategory=Footwear"
    )
    f = parse_filter("baseColour=Red|Blue")
    assert (f.field, f.op, f.values) == ("baseColour", "=", ("Red", "Blue"))
    f = parse_filter("price <= 50")
    assert (f.field, f.op, f.number) == ("price", "<=", 50.0)
    assert parse_filter("price>1e2").number == 100.0
    assert parse_filter("a==b").op == "="
    assert parse_filter("url=http://x/?a=b").values == ("http://x/?a=b",)
    assert str(parse_filter("a!=b|c")) == "a!=b|c"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "masterCategory",
        "=Footwear",
        "masterCategory=",
        "colour=Red|",
        "price<=cheap",
        "price>",
        "a!b",
        "price<nan",
        "   ",
    ],
)
def test_bad_filters_raise_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_filter(text)
    assert repr(text) in str(excinfo.value)


def test_stringify_values() -> None:
    assert stringify_values(None) == ()
    assert stringify_values(float("nan")) == ()
    assert stringify_values("") == ()
    assert stringify_values(True) == ("true",)
    assert stringify_values(3.0) == ("3",)
    assert stringify_values(np.int64(7)) == ("7",)
    assert stringify_values(np.float32(0.5)) == ("0.5",)
    assert stringify_values(["a", "b", "a", None]) == ("a", "b")


def test_matching_frozen_is_cached_until_a_change(attrs: AttributeIndex) -> None:
    filters = parse_filters(["masterCategory=Apparel", "baseColour=Red"])
    first = attrs.matching_frozen(filters)
    assert first == frozenset({"003", "004"})
    assert attrs.matching_frozen(list(reversed(filters))) is first
    attrs.set("006", {"masterCategory": "Apparel", "baseColour": "Red"})
    assert attrs.matching_frozen(filters) == frozenset({"003", "004", "006"})
    attrs.remove("003")
    assert attrs.matching(filters) == {"004", "006"}
    assert attrs.matching_frozen([]) is None
