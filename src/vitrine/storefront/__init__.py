"""The storefront kit (JavaScript web components served at /kit/v1/) and the demo shop."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
KIT_VERSION = "v1"
KIT_FILE = STATIC / "vitrine-kit-v1.js"
