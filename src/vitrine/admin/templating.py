"""Jinja2 templates of the admin UI, with the filters the pages use."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

TEMPLATES = Path(__file__).parent / "templates"
# Scripts only from Vitrine itself; inline styles for colour swatches and the charts.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'self'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
NAV = (
    ("overview", "/admin", "Overview"),
    ("catalog", "/admin/catalog", "Catalog"),
    ("review", "/admin/review", "Review"),
    ("search", "/admin/search", "Visual search"),
    ("tryon", "/admin/tryon", "Try-on"),
    ("ads", "/admin/ads", "Ads"),
    ("upload", "/admin/upload", "Upload"),
    ("models", "/admin/models", "Models & jobs"),
    ("recommendations", "/admin/recommendations", "Recommendations"),
    ("customers", "/admin/customers", "Customers"),
    ("analytics", "/admin/analytics", "Analytics"),
    ("monitoring", "/admin/monitoring", "Monitoring"),
    ("webhooks", "/admin/webhooks", "Webhooks"),
    ("keys", "/admin/keys", "API keys"),
)


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) or digits == 0:
        return f"{round(value):,}"
    return f"{value:,.{digits}f}"


def _percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value / 2**20:,.0f} MB"


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    env.filters.update(number=_number, percent=_percent, when=_when, mb=_mb)
    env.globals["nav"] = NAV
    return templates


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.admin.templates
    context.setdefault("viewer", getattr(request.state, "viewer", None))
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response
