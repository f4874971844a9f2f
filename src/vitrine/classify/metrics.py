"""Honest evaluation of a field's predictions on held-out products.

Every held-out row counts, rare classes included (a class the model cannot predict
counts as an error, never as a skipped row). Reported: accuracy, macro and weighted
precision / recall / F1, per-class precision / recall / F1 and support, the confusion
matrix, top-k accuracy, a reliability table with the expected calibration error, and
the abstain threshold chosen for a target precision with its coverage.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

ABSTAINED = "(needs review)"


def _r(x: float) -> float:
    return round(float(x), 4)


def reliability(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error and the per-bin (confidence, accuracy, count) table."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    table = []
    ece = 0.0
    n = max(len(confidence), 1)
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence <= hi)
        count = int(inside.sum())
        if count == 0:
            continue
        conf, acc = float(confidence[inside].mean()), float(correct[inside].mean())
        ece += count / n * abs(conf - acc)
        table.append(
            {
                "low": _r(lo),
                "high": _r(hi),
                "confidence": _r(conf),
                "accuracy": _r(acc),
                "count": count,
            }
        )
    return _r(ece), table


def choose_threshold(
    confidence: np.ndarray, correct: np.ndarray, target_precision: float, min_accepted: int = 5
) -> float:
    """The lowest confidence above which predictions are right at least ``target_precision``
    of the time (at least ``min_accepted`` rows accepted); above 1 when none reaches it."""
    if len(confidence) == 0:
        return 1.01
    order = np.argsort(-confidence, kind="stable")
    conf, hits = confidence[order], correct[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    ok = np.flatnonzero(
        (precision >= target_precision) & (np.arange(1, len(hits) + 1) >= min_accepted)
    )
    if len(ok) == 0:
        return 1.01
    return float(conf[ok[-1]])


def selective(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> dict[str, float]:
    """Coverage and accuracy of the predictions at or above ``threshold``."""
    accepted = confidence >= threshold
    n = max(len(confidence), 1)
    return {
        "threshold": _r(threshold),
        "coverage": _r(accepted.sum() / n),
        "accuracy_when_accepted": _r(correct[accepted].mean()) if accepted.any() else None,  # type: ignore[dict-item]
        "needs_review": int((~accepted).sum()),
    }


def evaluate(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    confidence: np.ndarray,
    *,
    proba: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    top_k: Sequence[int] = (1, 3, 5),
    rare: Sequence[str] = (),
    bins: int = 10,
) -> dict[str, Any]:
    """All metrics of one field; ``proba``/``classes`` (the head's) give top-k accuracy."""
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    correct = y_true == y_pred
    labels = sorted(set(y_true) | set(y_pred))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    true_labels = sorted(set(y_true))
    in_truth = np.isin(labels, true_labels)
    macro = {  # over the classes present in the truth: predicting a stray class costs precision
        "precision": _r(p[in_truth].mean()),
        "recall": _r(r[in_truth].mean()),
        "f1": _r(f[in_truth].mean()),
    }
    weights = s / max(s.sum(), 1)
    weighted = {
        "precision": _r((p * weights).sum()),
        "recall": _r((r * weights).sum()),
        "f1": _r((f * weights).sum()),
    }
    per_class = {
        label: {
            "precision": _r(p[i]),
            "recall": _r(r[i]),
            "f1": _r(f[i]),
            "support": int(s[i]),
            "rare": label in rare,
        }
        for i, label in enumerate(labels)
    }
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    out: dict[str, Any] = {
        "rows": len(y_true),
        "accuracy": _r(correct.mean()) if len(y_true) else 0.0,
        "macro": macro,
        "weighted": weighted,
        "per_class": per_class,
        "confusion": {"labels": labels, "matrix": matrix.tolist()},
    }
    if proba is not None and classes is not None:
        index = {c: i for i, c in enumerate(classes)}
        target = np.array([index.get(v, -1) for v in y_true])
        ranks = np.argsort(-proba, axis=1)
        out["top_k"] = {
            str(k): _r(
                np.mean([t >= 0 and t in row[:k] for t, row in zip(target, ranks, strict=True)])
            )
            for k in top_k
            if k <= proba.shape[1]
        }
    ece, table = reliability(np.asarray(confidence, dtype=np.float64), correct, bins)
    out["calibration"] = {"ece": ece, "bins": table}
    return out
