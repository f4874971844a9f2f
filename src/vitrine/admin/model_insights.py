"""A trained classifier's stored metrics, shaped for the Models pages.

Pure functions over registry rows (see :mod:`vitrine.classify.trainer` for what a run
stores): the per-class table, the most confused classes as a heatmap, the commonest
confusions, the reliability chart, and two versions of a field side by side.
"""

from __future__ import annotations

from typing import Any

from vitrine.classify.registry import model_summary

HEATMAP_CLASSES = 8  # classes in the confusion heatmap (the most confused ones)
TOP_PAIRS = 10  # (true, predicted) confusions listed
PER_CLASS_ROWS = 300  # per-class rows shown (a field with more classes is cut, said so)
OFF_COLOUR = "209, 73, 91"  # errors: the palette's red
DIAG_COLOUR = "42, 157, 143"  # right answers: the palette's green


def headline(row: dict[str, Any]) -> dict[str, Any]:
    """A version's summary (accuracy, macro-F1, review threshold) with what it learned from."""
    summary = model_summary(row)
    metrics = row.get("metrics") or {}
    overall = metrics.get("all") or {}
    review = metrics.get("review") or {}
    return {
        **summary,
        "products_used": int(row.get("train_size") or 0) + int(row.get("validation_size") or 0),
        "evaluation_rows": overall.get("rows"),
        "ece": (overall.get("calibration") or {}).get("ece"),
        "coverage": review.get("coverage"),
        "accuracy_when_accepted": review.get("accuracy_when_accepted"),
        "note": metrics.get("note"),
    }


def per_class(metrics: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Per-class precision / recall / F1 / support, commonest class first (bounded), and
    how many classes there are in all."""
    table = (metrics.get("all") or {}).get("per_class") or {}
    rows = [{"label": label, **values} for label, values in table.items()]
    rows.sort(key=lambda r: (-int(r.get("support", 0)), str(r["label"])))
    return rows[:PER_CLASS_ROWS], len(rows)


def _cell(count: int, row_total: int, diagonal: bool, worst: int) -> dict[str, Any]:
    """One heatmap cell: green for right answers (by the row's recall), red for errors (by
    the worst confusion shown); dark text stays readable (>= 4.5:1) on both at full strength."""
    if diagonal:
        share = count / row_total if row_total else 0.0
        colour, alpha = DIAG_COLOUR, 0.1 + 0.7 * share
    else:
        share = count / worst if worst else 0.0
        colour, alpha = OFF_COLOUR, (0.1 + 0.75 * share) if count else 0.0
    return {
        "count": count,
        "diag": diagonal,
        "style": f"background: rgba({colour}, {alpha:.2f})" if alpha else "",
    }


def confusion(metrics: dict[str, Any], size: int = HEATMAP_CLASSES) -> dict[str, Any] | None:
    """The most confused classes' corner of the confusion matrix (rows: the true class,
    columns: the predicted one) with cell colours, and the commonest confusions overall."""
    stored = (metrics.get("all") or {}).get("confusion") or {}
    labels: list[str] = list(stored.get("labels") or [])
    matrix: list[list[int]] = stored.get("matrix") or []
    if not labels or len(matrix) != len(labels):
        return None
    n = len(labels)
    errors = [0] * n
    pairs: list[tuple[int, str, str]] = []
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if i != j and count:
                errors[i] += count
                errors[j] += count
                pairs.append((int(count), labels[i], labels[j]))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    chosen = sorted(range(n), key=lambda i: (-errors[i], labels[i]))[:size]
    chosen.sort(key=lambda i: labels[i])
    worst = max((matrix[i][j] for i in chosen for j in chosen if i != j), default=0)
    rows = [
        {
            "label": labels[i],
            "total": sum(matrix[i]),
            "cells": [_cell(int(matrix[i][j]), sum(matrix[i]), i == j, worst) for j in chosen],
        }
        for i in chosen
    ]
    return {
        "labels": [labels[i] for i in chosen],
        "rows": rows,
        "classes": n,
        "pairs": [{"true": t, "predicted": p, "count": c} for c, t, p in pairs[:TOP_PAIRS]],
        "errors": sum(errors) // 2,
    }


def reliability_chart(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Chart spec: per confidence bin, the observed accuracy beside the mean confidence
    (equal bars: perfectly calibrated; accuracy below confidence: over-confident)."""
    bins = calibration_bins(metrics)
    if not bins:
        return None
    return {
        "type": "bar",
        "labels": [f"{b['low']:.1f}–{b['high']:.1f}" for b in bins],
        "datasets": [
            {"label": "Observed accuracy", "data": [b["accuracy"] for b in bins]},
            {"label": "Mean confidence", "data": [b["confidence"] for b in bins]},
        ],
    }


def calibration_bins(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The reliability table: per confidence bin (low, high], its mean confidence, the
    accuracy observed there and how many held-out rows fell in it."""
    return ((metrics.get("all") or {}).get("calibration") or {}).get("bins") or []


def compare_versions(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two versions of one field: headline figures and per-class F1, B minus A; the
    classes that changed most first."""
    table_a = ((a.get("metrics") or {}).get("all") or {}).get("per_class") or {}
    table_b = ((b.get("metrics") or {}).get("all") or {}).get("per_class") or {}
    rows = []
    for label in sorted(set(table_a) | set(table_b)):
        f1_a = table_a.get(label, {}).get("f1")
        f1_b = table_b.get(label, {}).get("f1")
        delta = f1_b - f1_a if f1_a is not None and f1_b is not None else None
        rows.append(
            {
                "label": label,
                "f1_a": f1_a,
                "f1_b": f1_b,
                "delta": delta,
                "support_a": table_a.get(label, {}).get("support"),
                "support_b": table_b.get(label, {}).get("support"),
            }
        )
    rows.sort(key=lambda r: (r["delta"] is None, -abs(r["delta"] or 0.0), r["label"]))
    head_a, head_b = headline(a), headline(b)

    def change(key: str) -> float | None:
        x, y = head_a.get(key), head_b.get(key)
        return y - x if x is not None and y is not None else None

    return {
        "a": head_a,
        "b": head_b,
        "accuracy_delta": change("accuracy"),
        "macro_f1_delta": change("macro_f1"),
        "ece_delta": change("ece"),
        "coverage_delta": change("coverage"),
        "rows": rows[:PER_CLASS_ROWS],
        "classes": len(rows),
    }
