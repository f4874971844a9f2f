"""The storefront kit (JavaScript web components served at /kit/v1/) and the demo shop."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
KIT_VERSION = "v1"
KIT_DIR = STATIC / f"kit-{KIT_VERSION}"  # vitrine.js, the entry, and the modules it imports
KIT_FILES = frozenset(path.name for path in KIT_DIR.glob("*.js"))
