"""Helpers shared by the command modules: JSON output, errors, opening the service."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from vitrine.config import ConfigError, load_settings

FilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filter", "-f", help="Attribute filter field=value (value may be a|b); repeatable."
    ),
]


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def open_vitrine(**overrides: Any) -> Any:
    """The service on the configured settings (with ``overrides``); exit 2 on a config error."""
    from dataclasses import replace

    from vitrine import tracing
    from vitrine.runtime import Runtime

    try:
        settings = replace(load_settings(), **overrides)
        tracing.configure(settings, "cli")  # jobs run here are traced too
        return Runtime(settings)
    except ConfigError as exc:
        fail(str(exc))


def hits_json(vitrine: Any, hits: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "rank": rank,
            "product_id": hit.product_id,
            "score": round(float(hit.score), 4),
            "title": vitrine.search.describe(hit.product_id)[0],
        }
        for rank, hit in enumerate(hits, 1)
    ]


def parse_fields(text: str) -> list[str]:
    """Comma-separated label fields; exit 2 when there are none."""
    fields = [f.strip() for f in text.split(",") if f.strip()]
    if not fields:
        fail("name at least one field, e.g. --fields masterCategory,articleType")
    return fields


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Show a long step with its elapsed time on a terminal (a tqdm line that ticks)."""
    if not sys.stderr.isatty():
        yield
        return
    from tqdm import tqdm

    done = threading.Event()
    with tqdm(desc=name, bar_format="{desc}: {elapsed}", file=sys.stderr) as bar:

        def tick() -> None:
            while not done.wait(1.0):
                bar.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        started = time.monotonic()
        try:
            yield
        finally:
            done.set()
            ticker.join()
            bar.set_description(f"{name} (done in {time.monotonic() - started:.0f} s)")
