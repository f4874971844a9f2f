"""What the Models & jobs pages show and do: the shop's classifiers with their versions
and held-out metrics, training and (re)activation, the recommendation models and their
offline evaluations, and the background jobs that do the work.

The admin routes call one method of :class:`ModelsView` per request; it reads through the
services (the model registry, the job queue, the recommendation service, the catalog
browser) and never touches a table itself. Bad input raises :class:`ModelsRequestError`
(a 422 with its message) or :class:`ModelNotFound` (a 404).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from vitrine.admin import model_insights as insights
from vitrine.admin.cnn_panel import CnnPanel
from vitrine.catalog.browse import CatalogBrowser
from vitrine.catalog.models import as_utc
from vitrine.classify.features import FEATURE_GROUPS
from vitrine.classify.registry import TAG_PREFIX, UnknownModelError, model_summary
from vitrine.cluster.job_queue import (
    EVALUATE_RECOMMENDATIONS,
    FINETUNE_CNN,
    LABEL_CATALOG,
    SWITCH_CNN,
    TRAIN_CLASSIFIER,
    TRAIN_LOCALIZER,
    TRAIN_RECOMMENDATIONS,
)
from vitrine.recommend.evaluate import BASELINE
from vitrine.runtime import Runtime

ACTIVATION = {
    "if-better": "Activate if not worse than the active version",
    "always": "Always activate",
    "never": "Keep inactive (review first)",
}
GROUP_CHOICES = {
    "": "Automatic (best on held-out rows)",
    "embedding": "CNN embedding",
    "embedding+color": "Embedding + colour",
    "+".join(FEATURE_GROUPS): "Every photo feature",
}
KIND_NAMES = {
    LABEL_CATALOG: "Label the catalog",
    TRAIN_CLASSIFIER: "Train classifiers",
    TRAIN_RECOMMENDATIONS: "Train recommendations",
    EVALUATE_RECOMMENDATIONS: "Evaluate recommendations",
    FINETUNE_CNN: "Fine-tune the CNN",
    SWITCH_CNN: "Switch the CNN",
    TRAIN_LOCALIZER: "Train the localiser",
}
ACTIVE_STATES = ("queued", "running")
VERSIONS_SHOWN = 12  # per field, newest first
JOBS_SHOWN = 12
EVALUATIONS_SHOWN = 10
MAX_FIELDS = 32
SPEED_COLUMNS = ("fit_seconds", "recommend_ms")
NO_BEST = ("cold_share",)  # a share of the list, neither better high nor low


class ModelsRequestError(ValueError):
    """Input from the page that cannot be used; the message says why."""


class ModelNotFound(ModelsRequestError):
    """No such model version or job."""


def _by(user: str) -> str:
    return f"admin {user}"[:64]


def _seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


def _job_summary(job: dict[str, Any]) -> str:
    """One line on what a finished job did."""
    result = job.get("result") or {}
    kind = job["kind"]
    if kind == LABEL_CATALOG:
        by_field = ", ".join(f"{f}: {n:,}" for f, n in (result.get("by_field") or {}).items())
        text = f"labelled {int(result.get('labelled') or 0):,} products"
        return text + (f" ({by_field})" if by_field else "")
    if kind == TRAIN_CLASSIFIER:
        parts = []
        for m in result.get("models") or []:
            acc = m.get("accuracy")
            score = f"accuracy {100 * acc:.1f}%" if acc is not None else "no evaluation rows"
            parts.append(f"{m['version']} ({score}, {'active' if m.get('active') else 'inactive'})")
        return "; ".join(parts) or "no model trained"
    if kind == TRAIN_RECOMMENDATIONS:
        trained = result.get("trained") or {}
        return (
            f"{len(trained)} algorithms on {int(result.get('events') or 0):,} events, "
            f"{int(result.get('customers') or 0):,} customers"
        )
    if kind == EVALUATE_RECOMMENDATIONS:
        rows = result.get("results") or []
        return f"evaluation #{result.get('id')}: {len(rows)} algorithms at k={result.get('k')}"
    if kind == FINETUNE_CNN and result.get("version"):
        return (
            f"{result['version']} on {int(result.get('products') or 0):,} products "
            f"({_seconds(float(result.get('train_seconds') or 0))}); not in service yet"
        )
    if kind == SWITCH_CNN and result.get("version"):
        if not result.get("changed"):
            return f"{result['version']} was in service already"
        return f"{result['version']} in service (was {result.get('previous')})"
    if kind == TRAIN_LOCALIZER and result.get("version"):
        recall = (result.get("evaluation") or {}).get("product_recall_iou50")
        return f"{result['version']}: finds {100 * float(recall or 0):.0f}% of held-out products"
    return ""


def job_row(job: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """A job as the jobs panel shows it: kind, state, progress, duration, outcome."""
    now = now or datetime.now(UTC)
    started, finished = as_utc(job.get("started_at")), as_utc(job.get("finished_at"))
    created = as_utc(job.get("created_at"))
    if started is not None:
        duration = _seconds(((finished or now) - started).total_seconds())
    elif created is not None and job["state"] == "queued":
        duration = f"waiting {_seconds((now - created).total_seconds())}"
    else:
        duration = "–"
    total, done = int(job.get("total") or 0), int(job.get("done") or 0)
    return {
        "id": job["id"],
        "kind": job["kind"],
        "name": KIND_NAMES.get(job["kind"], job["kind"]),
        "state": job["state"],
        "stage": job.get("stage") or "",
        "done": done,
        "total": total,
        "percent": round(100 * done / total) if total else None,
        "duration": duration,
        "created_at": created,
        "created_by": job.get("created_by") or "automatic",
        "summary": _job_summary(job) if job["state"] == "done" else "",
        "error": job.get("error") or "",
        "active": job["state"] in ACTIVE_STATES,
        "cancel_requested": bool(job.get("cancel_requested")),
    }


def _from_days(day: float) -> date:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).date()


@dataclass
class ModelsView:
    """The Models & jobs pages over the runtime's services (cheap to build per request)."""

    runtime: Runtime
    browser: CatalogBrowser

    # -- pages ------------------------------------------------------------------------

    def page(self) -> dict[str, Any]:
        """Everything /admin/models shows."""
        span = self.event_span()
        return {
            "fields": self.classifiers(),
            "trainable": self.trainable_fields(),
            "activation": ACTIVATION,
            "groups": GROUP_CHOICES,
            "recommendations": self.recommendation_status(),
            "evaluations": self.evaluations(),
            "span": span,
            "default_split": self.default_split(span),
            # the split dates evaluate() accepts: after the first day, up to the last
            "split_range": (span[0] + timedelta(days=1), span[1]) if span else None,
            "cnn": self.cnn().panel(),
            "localizer": self.runtime.finder.record(),
            **self.jobs(),
        }

    def cnn(self) -> CnnPanel:
        """The CNN panel: its versions, fine-tuning and the switch."""
        return CnnPanel(self.runtime, self.trainable_fields)

    def detail(self, model_id: int) -> dict[str, Any]:
        """/admin/models/{id}: one version with its metrics and the other versions."""
        row = self._model(model_id)
        metrics = row.get("metrics") or {}
        registry = self.runtime.classification.registry
        versions = [insights.headline(m) for m in registry.list(row["field"])]
        per_class, classes = insights.per_class(metrics)
        return {
            "model": insights.headline(row),
            "metrics": metrics,
            "per_class": per_class,
            "classes": classes,
            "confusion": insights.confusion(metrics),
            "reliability": insights.reliability_chart(metrics),
            "bins": insights.calibration_bins(metrics),
            "comparison": row.get("comparison") or {},
            "versions": versions[::-1][:VERSIONS_SHOWN],
            "can_rollback": self._can_rollback(row["field"]),
            **self.jobs(),
        }

    def compare(self, a_id: int, b_id: int) -> dict[str, Any]:
        """Two versions of one field side by side."""
        a, b = self._model(a_id), self._model(b_id)
        if a["field"] != b["field"]:
            raise ModelsRequestError(
                f"{a['version']} and {b['version']} classify different fields "
                f"({a['field']} and {b['field']}): compare versions of one field"
            )
        versions = self.runtime.classification.registry.list(a["field"])
        return {
            **insights.compare_versions(a, b),
            "field": a["field"],
            "versions": [model_summary(m) for m in versions[::-1]],
        }

    # -- classifiers --------------------------------------------------------------------

    def classifiers(self) -> list[dict[str, Any]]:
        """Per field: its versions (newest first, bounded) and the active one."""
        fields: dict[str, list[dict[str, Any]]] = {}
        for row in self.runtime.classification.registry.list():
            fields.setdefault(row["field"], []).append(row)
        out = []
        for name, rows in fields.items():
            active = next((r for r in rows if r["active"]), None)
            out.append(
                {
                    "field": name,
                    "tag": name.startswith(TAG_PREFIX),
                    "active": insights.headline(active) if active else None,
                    "versions": [insights.headline(r) for r in rows[::-1][:VERSIONS_SHOWN]],
                    "count": len(rows),
                    "can_rollback": active is not None
                    and any(r["id"] < active["id"] and r["activated_at"] for r in rows),
                }
            )
        return out

    def active_classifiers(self) -> list[dict[str, Any]]:
        """The active version of every field (the overview's "Active models")."""
        return [model_summary(r) for r in self.runtime.classification.registry.active()]

    def trainable_fields(self) -> list[str]:
        """The shop's own attribute fields and the label fields, as training can read."""
        names = set(self.browser.attribute_values(sample=1000, top=1))
        names |= {f for f in self.browser.label_fields() if not f.startswith(TAG_PREFIX)}
        return sorted(names)[:64]

    def train(
        self,
        fields: list[str],
        activate: str,
        groups: str,
        min_support: str,
        user: str,
    ) -> dict[str, Any]:
        """Queue a ``train_classifier`` job; returns it."""
        chosen = sorted({f.strip() for f in fields if f.strip()})
        if not chosen:
            raise ModelsRequestError("Choose at least one field to train.")
        if len(chosen) > MAX_FIELDS:
            raise ModelsRequestError(f"Train at most {MAX_FIELDS} fields at once.")
        unknown = sorted(set(chosen) - set(self.trainable_fields()))
        if unknown:
            raise ModelsRequestError(
                f"No product has a value for {', '.join(unknown)}: nothing to learn from."
            )
        if activate not in ACTIVATION:
            raise ModelsRequestError(f"Activation must be one of {', '.join(ACTIVATION)}.")
        if groups not in GROUP_CHOICES:
            raise ModelsRequestError(f"Unknown feature groups {groups!r}.")
        params: dict[str, Any] = {"fields": chosen, "activate": activate}
        if groups:
            params["groups"] = groups
        if min_support.strip():
            try:
                support = int(min_support)
            except ValueError:
                raise ModelsRequestError(
                    f"Minimum examples per class must be a whole number, not {min_support!r}."
                ) from None
            if not 1 <= support <= 100_000:
                raise ModelsRequestError("Minimum examples per class is 1 to 100,000.")
            params["min_support"] = support
        return self.runtime.jobs.submit(TRAIN_CLASSIFIER, params, _by(user))

    def activate(self, model_id: int) -> dict[str, Any]:
        """Make a version active; returns it and the job labelling the catalog with it."""
        self._model(model_id)
        row = self.runtime.classification.activate(model_id)
        return {"model": model_summary(row), "job": self._labelling_job()}

    def rollback(self, field: str) -> dict[str, Any]:
        """Re-activate the field's previously active version (and label with it)."""
        try:
            row = self.runtime.classification.rollback(field)
        except UnknownModelError as exc:
            raise ModelsRequestError(str(exc.args[0]) if exc.args else str(exc)) from None
        return {"model": model_summary(row), "job": self._labelling_job()}

    def relabel(self, user: str) -> dict[str, Any]:
        """Queue the job that labels the whole catalog again with the active models (the
        shop's own values and people's labels stay)."""
        if not self.runtime.classification.registry.active():
            raise ModelsRequestError("No classifier is active yet: train one first.")
        # The params of Runtime.label_catalog(None, relabel=True): a queued twin is reused.
        return self.runtime.jobs.submit(LABEL_CATALOG, {"fields": None, "relabel": True}, _by(user))

    def _labelling_job(self) -> dict[str, Any] | None:
        jobs = self.runtime.jobs.latest(1, (LABEL_CATALOG,))
        return jobs[0] if jobs else None

    def _model(self, model_id: int) -> dict[str, Any]:
        try:
            return self.runtime.classification.registry.get(model_id)
        except UnknownModelError:
            raise ModelNotFound(f"There is no model version {model_id}.") from None

    def _can_rollback(self, field: str) -> bool:
        rows = self.runtime.classification.registry.list(field)
        active = next((r for r in rows if r["active"]), None)
        return active is not None and any(
            r["id"] < active["id"] and r["activated_at"] for r in rows
        )

    # -- recommendations ------------------------------------------------------------------

    def recommendation_status(self) -> dict[str, Any]:
        """Whether models are loaded, when they were trained, what they hold."""
        svc = self.runtime.recommendations
        if not svc.ready:
            return {"ready": False, "error": svc.last_error}
        m = svc.models
        return {
            "ready": True,
            "trained_at": datetime.fromtimestamp(m.trained_at, UTC),
            "algorithms": sorted(m.train_seconds.items()),
            "products": m.data.n_catalog,
            "customers": m.data.n_users,
            "events": len(m.data.ev_day),
            "events_skipped": m.data.skipped_events,
            "error": svc.last_error,
        }

    def evaluations(self, limit: int = EVALUATIONS_SHOWN) -> list[dict[str, Any]]:
        """Stored offline evaluations, latest first: per algorithm each metric with its
        change against the popularity baseline."""
        out = []
        for run in self.runtime.recommendations.evaluations(limit):
            results = run.get("results") or []
            base = next((r for r in results if r.get("algorithm") == BASELINE), None)
            names: list[str] = []
            for r in results:
                names += [
                    k
                    for k, v in r.items()
                    if k not in names
                    and k not in SPEED_COLUMNS
                    and isinstance(v, int | float)
                    and not isinstance(v, bool)
                ]
            best = {n: max((float(r.get(n) or 0.0) for r in results), default=0.0) for n in names}
            rows = []
            for r in results:
                cells = []
                for n in names:
                    value = r.get(n)
                    ref = base.get(n) if base is not None else None
                    lift = (
                        value / ref - 1
                        if isinstance(value, int | float) and ref and r is not base
                        else None
                    )
                    cells.append(
                        {
                            "value": value,
                            "lift": lift,
                            "best": n not in NO_BEST and bool(best[n]) and value == best[n],
                        }
                    )
                rows.append(
                    {
                        "algorithm": r.get("algorithm"),
                        "baseline": r is base,
                        "cells": cells,
                        "fit_seconds": r.get("fit_seconds"),
                    }
                )
            out.append(
                {
                    "id": run["id"],
                    "split": as_utc(run["split_date"]),
                    "k": run["k"],
                    "created_at": as_utc(run.get("created_at")),
                    "facts": run.get("params") or {},
                    "metrics": names,
                    "rows": rows,
                }
            )
        return out

    def event_span(self) -> tuple[date, date] | None:
        """The first and last day of the events the current models were trained on."""
        svc = self.runtime.recommendations
        if not svc.ready:
            return None
        days = svc.models.data.ev_day
        if len(days) == 0:
            return None
        return _from_days(float(days[0])), _from_days(float(days[-1]))

    def default_split(self, span: tuple[date, date] | None) -> date:
        """A week before the last event (the middle of a shorter log)."""
        if span is None:
            return datetime.now(UTC).date() - timedelta(days=7)
        first, last = span
        return max(first + (last - first) / 2, last - timedelta(days=7))

    def evaluate(self, split: str, k: str, test_days: str, user: str) -> dict[str, Any]:
        """Queue an offline evaluation; returns the job."""
        try:
            day = date.fromisoformat(split.strip())
        except ValueError:
            raise ModelsRequestError(
                f"Split date {split!r} is not a date like 2020-09-01."
            ) from None
        try:
            top = int(k)
        except ValueError:
            raise ModelsRequestError(f"k must be a whole number, not {k!r}.") from None
        if not 1 <= top <= 100:
            raise ModelsRequestError("k is 1 to 100 recommendations per customer.")
        span = self.event_span()
        if span is not None and not span[0] < day <= span[1]:
            raise ModelsRequestError(
                f"The events run from {span[0]} to {span[1]}: choose a split date after the "
                "first day and no later than the last, so that there is history to learn "
                "from and purchases to find."
            )
        params: dict[str, Any] = {"split": day.isoformat(), "k": top}
        if test_days.strip():
            try:
                days = float(test_days)
            except ValueError:
                raise ModelsRequestError(
                    f"Test days must be a number, not {test_days!r}."
                ) from None
            if not 0 < days <= 3650:
                raise ModelsRequestError("Test days is more than 0 and at most 3650.")
            params["test_days"] = days
        return self.runtime.jobs.submit(EVALUATE_RECOMMENDATIONS, params, _by(user))

    def train_localizer(self, user: str) -> dict[str, Any]:
        """Queue the job that trains the localiser of products in real photos."""
        return self.runtime.jobs.submit(TRAIN_LOCALIZER, {}, _by(user))

    def retrain_recommendations(self, user: str) -> dict[str, Any]:
        """Queue the job that retrains every strategy's models."""
        return self.runtime.jobs.submit(TRAIN_RECOMMENDATIONS, {}, _by(user))

    # -- jobs -----------------------------------------------------------------------------

    def jobs(self, limit: int = JOBS_SHOWN) -> dict[str, Any]:
        """The latest jobs and whether any is still queued or running."""
        now = datetime.now(UTC)
        rows = [job_row(j, now) for j in self.runtime.jobs.latest(limit)]
        return {"jobs": rows, "jobs_active": any(j["active"] for j in rows)}

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Cancel a queued job, or ask a running one to stop; returns the jobs panel."""
        if self.runtime.jobs.cancel(job_id) is None:
            raise ModelNotFound(f"There is no job {job_id}.")
        return self.jobs()
