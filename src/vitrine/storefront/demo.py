"""The demo storefront at /demo: a small shop built only from the kit and a storefront key.

Off unless ``demo_storefront`` is on. Its pages are plain HTML with the kit's elements;
``demo.js`` configures the kit with the key of ``demo_storefront_key`` (a storefront key,
public by design) and draws the product page's own product from its card.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, FileSystemLoader, select_autoescape

from vitrine.config import Settings
from vitrine.storefront import STATIC

TEMPLATES = STATIC.parent / "templates"
# The kit and the demo's own files only; photos from Vitrine (signed addresses) or the
# shop's CDN; the photo search's preview is a blob: URL.
DEMO_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' https: data: blob:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
STATIC_FILES = {"demo.js": "text/javascript", "demo.css": "text/css"}


@dataclass(frozen=True)
class DemoPage:
    """A rendered page and its HTTP status (503: the demo has no key yet)."""

    status: int
    html: str


class DemoShop:
    """Renders the demo's pages (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.demo_storefront
        self.key = settings.demo_storefront_key.strip()
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"])
        )

    def page(self, name: str, **context: str) -> DemoPage | None:
        """``home`` or ``product``; None while the demo is off."""
        if not self.enabled:
            return None
        if not self.key:
            return DemoPage(503, self.env.get_template("demo_no_key.html").render())
        html = self.env.get_template(f"demo_{name}.html").render(key=self.key, **context)
        return DemoPage(200, html)

    def static_file(self, name: str) -> tuple[bytes, str] | None:
        """One of the demo's own files (its bytes and media type); None: off or unknown."""
        media = STATIC_FILES.get(name)
        if not self.enabled or media is None:
            return None
        return (STATIC / name).read_bytes(), media
