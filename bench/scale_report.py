"""The scale benchmark's report: the table with growth exponents, the docs section and the
log-log curve (``docs/scale.svg``, hand-written SVG: one small panel per figure)."""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
SVG = REPO / "docs" / "scale.svg"
MILLION = 1_000_000

# key, label, unit, target at 1M products (None: no target), lower is better
FIGURES: list[tuple[str, str, str, float | None, bool]] = [
    ("photo_p50_ms", "search by photo p50 @20/s", "ms", None, True),
    ("photo_p99_ms", "search by photo p99 @20/s", "ms", 150, True),
    ("similar_p99_ms", "similar p99 @200/s", "ms", 20, True),
    ("recs_p99_ms", "user recommendations p99 @200/s", "ms", 50, True),
    ("pss_1_mb", "memory, 1 API process (PSS)", "MB", None, True),
    ("pss_2_mb", "memory, 2-worker server (PSS)", "MB", 6144, True),
    ("ready_s", "start-up to ready (1 process)", "s", 60, True),
    ("ready_2_s", "start-up to ready (2 workers)", "s", 60, True),
    ("models_ready_s", "start-up to models loaded", "s", None, True),
    ("index_build_s", "index build", "s", None, True),
    ("train_s", "training, every model", "s", None, True),
    ("hybrid_train_s", "training, the hybrid", "s", None, True),
    ("batch_per_s", "batch recommendations", "customers/s", None, False),
]


def exponent(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    """log(f_b / f_a) / log(n_b / n_a): 1 is linear in the catalog, 0 flat."""
    fa, fb = a.get(key), b.get(key)
    if not fa or not fb or fa <= 0 or fb <= 0 or math.isnan(fa) or math.isnan(fb):
        return None
    return math.log(fb / fa) / math.log(b["products"] / a["products"])


def extrapolate(rows: list[dict[str, Any]], key: str) -> float | None:
    """The figure at 1M products from the last two sizes' exponent (an extrapolation)."""
    if len(rows) < 2 or rows[-1]["products"] >= MILLION:
        return None
    e = exponent(rows[-2], rows[-1], key)
    if e is None:
        return None
    return float(rows[-1][key] * (MILLION / rows[-1]["products"]) ** e)


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The markdown table: a column per size, the exponents, the 1M extrapolation."""
    pairs = list(itertools.pairwise(rows))
    head = ["figure", *[r["size"] for r in rows]]
    head += [f"exp. {a['size']}->{b['size']}" for a, b in pairs]
    extra = bool(rows) and rows[-1]["products"] < MILLION and len(rows) > 1
    head += (["1M, extrapolated"] if extra else []) + ["target at 1M"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key, label, unit, target, _ in FIGURES:
        cells = [f"{label} ({unit})", *[fmt(r.get(key)) for r in rows]]
        cells += ["-" if (e := exponent(a, b, key)) is None else f"{e:+.2f}" for a, b in pairs]
        if extra:
            cells.append(fmt(extrapolate(rows, key)))
        cells.append("-" if target is None else f"{target:g}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def print_table(rows: list[dict[str, Any]]) -> None:
    print()
    print("\n".join(table(rows)))


# -- the curve -------------------------------------------------------------------------


def svg(rows: list[dict[str, Any]]) -> str:
    """One log-log panel per figure: measured points (solid), the extrapolation to 1M
    (dashed), the target at 1M (red mark)."""
    cols, w, h, pad = 4, 230, 170, 38
    panels = len(FIGURES)
    width, height = cols * w + 30, math.ceil(panels / cols) * h + 30
    x_lo, x_hi = math.log10(5_000), math.log10(2 * MILLION)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="8" y="16" font-size="12">Vitrine scale curve: each figure against '
        "catalog size (log-log); dashed: extrapolated; red: target at 1M</text>",
    ]
    for i, (key, label, unit, target, _) in enumerate(FIGURES):
        ox, oy = (i % cols) * w, 30 + (i // cols) * h
        pts = [(r["products"], r[key]) for r in rows if r.get(key) and r[key] > 0]
        ext = extrapolate(rows, key)
        values = [v for _, v in pts] + [v for v in (ext, target) if v]
        if not values:
            continue
        y_lo = math.floor(math.log10(min(values)) - 0.05)
        y_hi = math.ceil(math.log10(max(values)) + 0.05)
        y_hi = max(y_hi, y_lo + 1)

        def xy(
            n: float, v: float, ox: int = ox, oy: int = oy, lo: int = y_lo, hi: int = y_hi
        ) -> str:
            span = hi - lo
            x = ox + pad + (math.log10(n) - x_lo) / (x_hi - x_lo) * (w - pad - 10)
            y = oy + h - 25 - (math.log10(v) - lo) / span * (h - 50)
            return f"{x:.1f},{y:.1f}"

        out.append(f'<text x="{ox + pad}" y="{oy + 12}">{label} ({unit})</text>')
        x0, y0 = xy(10**x_lo, 10**y_lo).split(",")
        x1, y1 = xy(10**x_hi, 10**y_hi).split(",")
        out.append(
            f'<rect x="{x0}" y="{y1}" width="{float(x1) - float(x0):.1f}" '
            f'height="{float(y0) - float(y1):.1f}" fill="none" stroke="#999"/>'
        )
        for e in range(y_lo, y_hi + 1):
            gx, gy = xy(10**x_lo, 10**e).split(",")
            out.append(
                f'<text x="{float(gx) - 3}" y="{float(gy) + 3}" text-anchor="end">{10**e:g}</text>'
            )
        for n, name in ((10_000, "10k"), (100_000, "100k"), (MILLION, "1M")):
            gx, _ = xy(n, 10**y_lo).split(",")
            out.append(f'<text x="{gx}" y="{float(y0) + 12}" text-anchor="middle">{name}</text>')
        if pts:
            line = " ".join(xy(n, v) for n, v in pts)
            out.append(f'<polyline points="{line}" fill="none" stroke="#1f5fbf" stroke-width="2"/>')
            for n, v in pts:
                cx, cy = xy(n, v).split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="#1f5fbf"/>')
        if ext and pts:
            out.append(
                f'<polyline points="{xy(*pts[-1])} {xy(MILLION, ext)}" fill="none" '
                'stroke="#1f5fbf" stroke-dasharray="4 3"/>'
            )
        if target:
            tx, ty = xy(MILLION, target).split(",")
            out.append(
                f'<line x1="{float(tx) - 7}" x2="{float(tx) + 7}" y1="{ty}" y2="{ty}" '
                'stroke="#d22" stroke-width="2"/>'
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- the docs --------------------------------------------------------------------------


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text()
    flags = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split())  # type: ignore[union-attr]
    return ", ".join(
        f"{f} {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "avx512_vnni")
    )


def write_docs(
    rows: list[dict[str, Any]], skipped: list[dict[str, Any]], notes: str, options: str
) -> None:
    """Replace the "Scale" section of docs/benchmarks.md and write docs/scale.svg."""
    SVG.write_text(svg(rows))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    sizes = ",".join(r["size"] for r in rows)
    built = "\n".join(
        f"- {r['size']}: {r['products']:,} products, {r['events']:,} events, "
        f"{r['customers']:,} customers, database {r['db_bytes'] / 2**30:.1f} GiB, "
        f"written in {r['catalog_write_s'] + r['events_write_s']:.0f} s"
        for r in rows
    )
    lines = [
        "## Scale",
        "",
        "```bash",
        f".venv/bin/python bench/bench_scale.py --sizes {sizes} {options}--docs",
        "```",
        "",
        "How every cost grows with the catalog and the event log. Each size is a home of",
        "synthetic products, 10 purchase events per product and as many customers as",
        "products, built once and cached (`bench/scale_build.py`): every product copies a",
        "row of the real fashion-small catalog (title, attributes, photo size, the CNN",
        "embedding and every aspect) with Gaussian noise of 0.4 times each vector's norm,",
        "so copies of one product are near neighbours (cosine ~0.86 to each other; a real",
        "product's nearest neighbour: median 0.89); events have Zipf (1.1) popularity,",
        "log-normal customer activity, 25 % repeat purchases and 25 % purchases of a",
        "variant of something bought before, in baskets of 3 on one day each, over a year.",
        "Latencies are open loop over loopback against 1 API process (`make bench-scale`;",
        "`SCALE_SIZES=...` picks the sizes), the load generator on the same 2 cores, 20 %",
        "of the customers asked for cold; memory is PSS (shared pages counted once) of every",
        "process of the server after the load; start-up runs from the process start to",
        "`/readyz` answering 200 (the saved index loaded), then to every worker's",
        "recommendation models loaded. Index build (HNSW from 5,000 products), training",
        "(every model, the lists precomputed for up to 20,000 customers, saved) and batch",
        "throughput (`recommend_many`, default strategy, 2,000 customers) run in process.",
        "The exponent is `log(f_b / f_a) / log(b / a)` between two sizes: 1 grows with the",
        "catalog, 0 is flat.",
        "",
        f"Run of {max(r['date'] for r in rows) if rows else '-'} (commit {commit}), "
        "2-core VM, 24 GiB,",
        f"CPU: {cpu_flags()}. Built:",
        "",
        built,
        "",
        *table(rows),
        "",
        "![scale curve](scale.svg)",
        "",
    ]
    for r in skipped:
        lines.append(f"Not run: {r['size']} ({r['skipped']}).")
    if notes:
        lines += [notes, ""]
    section = "\n".join(lines).rstrip() + "\n"
    text = DOCS.read_text()
    match = re.search(r"^## Scale\n.*?(?=^## |\Z)", text, re.M | re.S)
    if match:
        text = text[: match.start()] + section + "\n" + text[match.end() :]
    else:
        text = text.rstrip() + "\n\n" + section
    DOCS.write_text(text.rstrip() + "\n")
    print(f"wrote {DOCS} and {SVG} ({time.strftime('%H:%M')})")
