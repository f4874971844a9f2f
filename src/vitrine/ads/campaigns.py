"""A visual search ad campaign: its rules, validated, and the search filters they become.

A campaign advertises in-stock products only; its categories (values of one catalog
field, none: every category), its price range and how many products per object found in
a photo narrow what may be advertised.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from vitrine.index.attributes import AttributeFilter

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_PER_OBJECT = 20
MAX_CATEGORIES = 200


class CampaignError(ValueError):
    """A campaign that cannot be saved; the message names the field and the problem."""


@dataclass(frozen=True)
class Campaign:
    """A campaign's rules (see the module docstring)."""

    name: str
    category_field: str
    categories: tuple[str, ...] = ()
    min_price: float | None = None
    max_price: float | None = None
    max_per_object: int = 3
    active: bool = True
    description: str | None = None
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)

    def filters(self) -> list[AttributeFilter]:
        """The search filters of the rules (in stock, categories, price range), built
        directly: a category may hold any character, the filter syntax's own included."""
        out = [AttributeFilter("available", "=", values=("true",))]
        if self.categories:
            out.append(AttributeFilter(self.category_field, "=", values=self.categories))
        if self.min_price is not None:
            out.append(AttributeFilter("price", ">=", number=self.min_price))
        if self.max_price is not None:
            out.append(AttributeFilter("price", "<=", number=self.max_price))
        return out

    def advertises(self, category: str | None) -> bool:
        """Whether an object the classifier calls ``category`` may get this campaign's ads
        (unknown: yes; the search filters still apply)."""
        if not self.categories or category is None:
            return True
        return category.casefold() in {c.casefold() for c in self.categories}

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["categories"] = list(self.categories)
        for key in ("created_at", "updated_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


def _price(name: str, value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise CampaignError(f"{name} must be a number")
    try:
        price = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CampaignError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(price) or price < 0:
        raise CampaignError(f"{name} must be a finite number >= 0")
    return price


def _categories(value: object) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise CampaignError("categories must be a list of category names")
    out = tuple(dict.fromkeys(str(c).strip() for c in items if str(c).strip()))
    if len(out) > MAX_CATEGORIES:
        raise CampaignError(f"a campaign names at most {MAX_CATEGORIES} categories")
    if any(len(c) > 128 for c in out):
        raise CampaignError("a category name has at most 128 characters")
    return out


def make_campaign(
    data: Mapping[str, Any], *, default_field: str, base: Campaign | None = None
) -> Campaign:
    """A validated campaign from ``data`` (an API body or a form), over ``base`` when
    editing (only the keys given change)."""
    if base is None:
        name = str(data.get("name") or "").strip()
        if not NAME.match(name):
            raise CampaignError(
                "name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                "or digit"
            )
        base = Campaign(name=name, category_field=default_field)
    changes: dict[str, Any] = {}
    if "category_field" in data and data["category_field"] not in (None, ""):
        fld = str(data["category_field"])
        if len(fld) > 64:
            raise CampaignError("category_field has at most 64 characters")
        changes["category_field"] = fld
    if "categories" in data:
        changes["categories"] = _categories(data["categories"])
    for key in ("min_price", "max_price"):
        if key in data:
            changes[key] = _price(key, data[key])
    if "max_per_object" in data and data["max_per_object"] is not None:
        value = data["max_per_object"]
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise CampaignError("max_per_object must be a whole number")
        try:
            count = int(value)
        except ValueError:
            raise CampaignError(f"max_per_object {value!r} is not a whole number") from None
        if not 1 <= count <= MAX_PER_OBJECT:
            raise CampaignError(f"max_per_object must be between 1 and {MAX_PER_OBJECT}")
        changes["max_per_object"] = count
    if "active" in data and data["active"] is not None:
        changes["active"] = bool(data["active"])
    if "description" in data:
        text = str(data["description"] or "").strip()
        if len(text) > 2000:
            raise CampaignError("description has at most 2000 characters")
        changes["description"] = text or None
    campaign = replace(base, **changes)
    low, high = campaign.min_price, campaign.max_price
    if low is not None and high is not None and low > high:
        raise CampaignError(f"min_price {low:g} is above max_price {high:g}")
    return campaign
