"""Models & jobs: the shop's classifiers and recommendation models, their training,
activation and evaluation, and the background jobs doing the work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from vitrine.admin.cnn_panel import CnnRequestError
from vitrine.admin.models_view import ModelNotFound, ModelsRequestError, ModelsView
from vitrine.admin.security import Viewer, editor, viewer
from vitrine.admin.templating import render

router = APIRouter(prefix="/admin/models")
MAX_ID = 2**63 - 1


def models_view(request: Request) -> ModelsView:
    admin = request.app.state.admin
    return ModelsView(admin.vitrine, admin.browser)


View = Annotated[ModelsView, Depends(models_view)]
Reader = Annotated[Viewer, Depends(viewer)]
Editor = Annotated[Viewer, Depends(editor)]


def _id(text: str, what: str) -> int:
    """A numeric id from the URL or a form, or a 404 naming what was asked for."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_ID:
        raise ModelNotFound(f"There is no {what} {text[:40]!r}.")
    return int(value)


def _failed(
    request: Request, exc: ModelsRequestError | CnnRequestError, page: bool = False
) -> HTMLResponse:
    status = 404 if isinstance(exc, ModelNotFound) else 422
    if page:
        title = "Not found" if status == 404 else "Cannot show this"
        return render(request, "error.html", status, title=title, message=str(exc), page="models")
    return render(request, "partials/models_notice.html", status, error=str(exc))


def _queued(
    request: Request,
    message: str,
    job: dict[str, Any] | None,
    events: Sequence[str] = ("jobs-changed",),
) -> HTMLResponse:
    response = render(request, "partials/models_notice.html", 202, message=message, job=job)
    response.headers["HX-Trigger"] = ", ".join(events)
    return response


@router.get("", response_class=HTMLResponse)
def models_page(request: Request, _: Reader, view: View) -> HTMLResponse:
    return render(request, "models.html", page="models", **view.page())


@router.get("/jobs", response_class=HTMLResponse)
def jobs_panel(request: Request, _: Reader, view: View, polling: str = "") -> HTMLResponse:
    """The jobs panel; polled while a job is queued or running. When the last one ends,
    the page is told (``models-changed``) so that the versions and evaluations refresh."""
    panel = view.jobs()
    response = render(request, "partials/models_jobs.html", **panel)
    if polling and not panel["jobs_active"]:
        response.headers["HX-Trigger"] = "models-changed"
    return response


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
def cancel_job(request: Request, job_id: str, _: Editor, view: View) -> HTMLResponse:
    try:
        panel = view.cancel(_id(job_id, "job"))
    except ModelsRequestError as exc:
        response = _failed(request, exc)
        response.headers["HX-Retarget"] = "#job-notice"  # the panel stays as it is
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return render(request, "partials/models_jobs.html", **panel)


@router.get("/compare", response_class=HTMLResponse)
def compare(request: Request, _: Reader, view: View, a: str = "", b: str = "") -> HTMLResponse:
    if not a.strip() or not b.strip():
        missing = ModelsRequestError("Choose two versions of one field to compare (a and b).")
        return _failed(request, missing, page=True)
    try:
        found = view.compare(_id(a, "model version"), _id(b, "model version"))
    except ModelsRequestError as exc:
        return _failed(request, exc, page=True)
    return render(request, "model_compare.html", page="models", **found)


@router.post("/train", response_class=HTMLResponse)
def train(
    request: Request,
    who: Editor,
    view: View,
    fields: Annotated[list[str] | None, Form()] = None,
    activate: Annotated[str, Form()] = "if-better",
    groups: Annotated[str, Form()] = "",
    min_support: Annotated[str, Form()] = "",
) -> HTMLResponse:
    try:
        job = view.train(fields or [], activate, groups, min_support, who.user.username)
    except ModelsRequestError as exc:
        return _failed(request, exc)
    names = ", ".join(job["params"]["fields"])
    return _queued(
        request,
        f"Training {names} is queued. A model that is activated then labels the catalog "
        "(another job).",
        job,
    )


@router.post("/label-catalog", response_class=HTMLResponse)
def label_catalog(request: Request, who: Editor, view: View) -> HTMLResponse:
    try:
        job = view.relabel(who.user.username)
    except ModelsRequestError as exc:
        return _failed(request, exc)
    return _queued(request, "The catalog is being labelled again with the active models.", job)


@router.post("/rollback", response_class=HTMLResponse)
def rollback(
    request: Request, _: Editor, view: View, field: Annotated[str, Form()] = ""
) -> HTMLResponse:
    try:
        done = view.rollback(field)
    except ModelsRequestError as exc:
        return _failed(request, exc)
    return _queued(
        request,
        f"{done['model']['version']} is active again; the catalog is being labelled with it.",
        done["job"],
        ("jobs-changed", "models-changed"),
    )


@router.post("/recommendations/train", response_class=HTMLResponse)
def retrain_recommendations(request: Request, who: Editor, view: View) -> HTMLResponse:
    job = view.retrain_recommendations(who.user.username)
    return _queued(
        request, "Retraining the recommendation models; serving goes on with the current ones.", job
    )


@router.post("/recommendations/evaluate", response_class=HTMLResponse)
def evaluate_recommendations(
    request: Request,
    who: Editor,
    view: View,
    split: Annotated[str, Form()] = "",
    k: Annotated[str, Form()] = "12",
    test_days: Annotated[str, Form()] = "",
) -> HTMLResponse:
    try:
        job = view.evaluate(split, k, test_days, who.user.username)
    except ModelsRequestError as exc:
        return _failed(request, exc)
    return _queued(
        request,
        f"Evaluating every algorithm on the purchases from {job['params']['split']} on; "
        "the result joins the table below when the job is done.",
        job,
    )


@router.post("/localizer/train", response_class=HTMLResponse)
def train_localizer(request: Request, who: Editor, view: View) -> HTMLResponse:
    job = view.train_localizer(who.user.username)
    return _queued(
        request,
        "Training the localiser on scenes made of your catalog's photos; scene search uses "
        "it as soon as the job is done.",
        job,
    )


@router.post("/cnn/finetune", response_class=HTMLResponse)
def finetune_cnn(
    request: Request,
    who: Editor,
    view: View,
    fields: Annotated[list[str] | None, Form()] = None,
    epochs: Annotated[str, Form()] = "4",
    input_size: Annotated[str, Form()] = "128",
) -> HTMLResponse:
    try:
        job = view.cnn().finetune(fields or [], epochs, input_size, who.user.username)
    except CnnRequestError as exc:
        return _failed(request, exc)
    return _queued(
        request,
        f"Fine-tuning the CNN on {', '.join(job['params']['fields'])} is queued. Nothing "
        "changes for shoppers until you put the new version in service.",
        job,
    )


@router.post("/cnn/switch", response_class=HTMLResponse)
def switch_cnn(
    request: Request, who: Editor, view: View, version: Annotated[str, Form()] = ""
) -> HTMLResponse:
    try:
        job = view.cnn().switch(version, who.user.username)
    except CnnRequestError as exc:
        return _failed(request, exc)
    return _queued(
        request,
        f"Putting {job['params']['version']} in service: photos are re-embedded and indexed "
        "beside the live index, then search, labels and recommendations swap at once.",
        job,
    )


@router.get("/{model_id}", response_class=HTMLResponse)
def model_detail(request: Request, model_id: str, _: Reader, view: View) -> HTMLResponse:
    try:
        found = view.detail(_id(model_id, "model version"))
    except ModelsRequestError as exc:
        return _failed(request, exc, page=True)
    return render(request, "model_detail.html", page="models", **found)


@router.post("/{model_id}/activate", response_class=HTMLResponse)
def activate(request: Request, model_id: str, _: Editor, view: View) -> HTMLResponse:
    try:
        done = view.activate(_id(model_id, "model version"))
    except ModelsRequestError as exc:
        return _failed(request, exc)
    return _queued(
        request,
        f"{done['model']['version']} is now active; the catalog is being labelled with it.",
        done["job"],
        ("jobs-changed", "models-changed"),
    )
