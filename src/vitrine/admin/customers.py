"""The customers view of the admin UI: find customers, and see one customer's history and
the recommendations each strategy would give them now.

Recommendations are previews (:meth:`RecommendationAdmin.preview`): computed for the
admin, never kept and never recorded as served, so that looking at a customer does not
count in click-through or coverage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vitrine.admin.ports import RecommendationAdmin, RecommendedItem, Strategy
from vitrine.catalog.browse import BrowseFilter, CatalogBrowser, ProductCard
from vitrine.recommend.customer_log import CustomerLog, CustomerSummary, HistoryRow

PAGE = 25
HISTORY_PAGE = 50
RECOMMENDATIONS = 12
MAX_QUERY = 128  # the longest customer id the events table holds


@dataclass(frozen=True)
class CustomerListing:
    """A page of customers: search results (by id) or the most recently active."""

    query: str
    customers: list[CustomerSummary]
    next_cursor: str | None


@dataclass
class CustomerView:
    """Everything the customer page shows."""

    summary: CustomerSummary
    history: list[tuple[HistoryRow, ProductCard | None]]
    next_before: int | None
    installed: bool
    strategies: list[str] = field(default_factory=list)
    strategy: str = ""
    recommendations: list[tuple[RecommendedItem, ProductCard | None]] = field(default_factory=list)
    error: str = ""


def _cursor(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ValueError(f"page cursor {raw!r} is not an event number")
    return int(raw)


class CustomerDirectory:
    """Customers from the event log, with product cards from the catalog."""

    def __init__(self, log: CustomerLog, browser: CatalogBrowser) -> None:
        self.log = log
        self.browser = browser

    def _cards(self, product_ids: list[str]) -> dict[str, ProductCard]:
        unique = list(dict.fromkeys(product_ids))
        if not unique:
            return {}
        found = self.browser.cards(BrowseFilter(), ids=unique, limit=len(unique))
        return {c.id: c for c in found}

    def listing(self, query: str = "", cursor: str = "") -> CustomerListing:
        """Customers whose id starts with ``query``, or (no query) the most recently
        active; ``cursor`` is the previous page's ``next_cursor`` (ValueError if bad)."""
        query = query.strip()
        if len(query) > MAX_QUERY:
            raise ValueError(f"a customer id has at most {MAX_QUERY} characters")
        if query:
            page = self.log.search(query, after=cursor.strip(), limit=PAGE)
        else:
            page = self.log.recent(before=_cursor(cursor), limit=PAGE)
        return CustomerListing(query, page.customers, page.next_cursor)

    def view(
        self,
        user_id: str,
        *,
        strategy: str = "",
        before: str = "",
        recommender: RecommendationAdmin | None,
    ) -> CustomerView | None:
        """The customer's page (None: no event has this id); a bad ``before`` or an
        unknown ``strategy`` raises ValueError."""
        summary = self.log.summary(user_id)
        if summary is None:
            return None
        rows, next_before = self.log.history(user_id, before=_cursor(before), limit=HISTORY_PAGE)
        view = CustomerView(summary, [], next_before, installed=recommender is not None)
        items: list[RecommendedItem] = []
        if recommender is not None:
            strategies = recommender.strategies()
            view.strategies = [s.name for s in strategies]
            chosen = _choose(strategies, strategy)
            view.strategy = chosen.name if chosen is not None else ""
            if chosen is not None:
                try:
                    items = recommender.preview(
                        chosen, customer_id=user_id, product_id=None, k=RECOMMENDATIONS
                    )
                except ValueError as exc:
                    view.error = str(exc)
        cards = self._cards([r.product_id for r in rows] + [i.product_id for i in items])
        view.history = [(r, cards.get(r.product_id)) for r in rows]
        view.recommendations = [(i, cards.get(i.product_id)) for i in items]
        return view


def _choose(strategies: list[Strategy], name: str) -> Strategy | None:
    """The strategy named, or the first (``default`` when there is one)."""
    if name:
        found = next((s for s in strategies if s.name == name), None)
        if found is None:
            known = ", ".join(s.name for s in strategies)
            raise ValueError(f"no strategy {name!r}; strategies are {known}")
        return found
    return next(
        (s for s in strategies if s.name == "default"), strategies[0] if strategies else None
    )
