"""Classification commands: train heads and tag models, evaluate, record feedback, export
labels; ``vitrine models`` (list, activate, roll back)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vitrine.cli.common import fail, open_vitrine, parse_fields, print_json, stage
from vitrine.cli.jobs import run_job_here, run_queued_jobs

models_app = typer.Typer(
    help="Classification models: list, activate, roll back.", no_args_is_help=True
)


def train(
    fields: Annotated[
        str, typer.Option(help="Comma-separated label fields, e.g. masterCategory,articleType.")
    ],
    groups: Annotated[
        str | None,
        typer.Option(help="Feature groups, e.g. embedding+color (default: chosen per field)."),
    ] = None,
    activate: Annotated[
        str, typer.Option(help="if-better (default), always or never.")
    ] = "if-better",
    min_support: Annotated[int | None, typer.Option(help="Rare below this many examples.")] = None,
    finetune: Annotated[
        bool, typer.Option("--finetune", help="First fine-tune the CNN on the photos (slow).")
    ] = False,
    method: Annotated[
        str, typer.Option(help="Fine-tuning: 'whole' network (default) or 'last-blocks'.")
    ] = "whole",
    device: Annotated[
        str, typer.Option(help="Fine-tuning: auto (a GPU when torch sees one), cpu or cuda.")
    ] = "auto",
    input_size: Annotated[
        int, typer.Option(help="Fine-tuning (whole): the network's input side, 56 to 224.")
    ] = 128,
    epochs: Annotated[int, typer.Option(help="Fine-tuning (whole): at most this many epochs.")] = 4,
    budget_minutes: Annotated[
        float, typer.Option(help="Fine-tuning: wall-clock budget of the training loop.")
    ] = 120.0,
    trainable_blocks: Annotated[
        int, typer.Option(help="Fine-tuning (last-blocks): how many of the last blocks.")
    ] = 2,
) -> None:
    """Train one head per field on the stored features; activate it when not worse.

    With --finetune: fine-tune the CNN on the labelled photos, export it as a new embedding
    model version, re-embed the catalog with it and index it (the version in service keeps
    serving), then train heads on the new embeddings, kept inactive until
    `vitrine model switch VERSION` puts them and the new CNN in service."""
    from vitrine.classify.trainer import TrainingError

    if activate not in {"if-better", "always", "never"}:
        fail("--activate must be if-better, always or never")
    if finetune:
        params = {
            "fields": parse_fields(fields),
            "method": method,
            "device": device,
            "input_size": input_size,
            "epochs": epochs,
            "budget_minutes": budget_minutes,
            "trainable_blocks": trainable_blocks,
            "min_support": min_support,
        }
        _train_finetuned({k: v for k, v in params.items() if v is not None})
        return
    vitrine = open_vitrine()
    chosen = groups.split("+") if groups else None
    names = parse_fields(fields)
    try:
        with stage(f"training {', '.join(names)}"):
            rows = vitrine.classification.train(
                names, activate=activate, groups=chosen, min_support=min_support
            )
        # An activated model queued the job that labels the catalog: run it here when
        # no server runs it.
        run_queued_jobs(vitrine)
    except (TrainingError, ValueError) as exc:
        fail(str(exc))
    finally:
        vitrine.close()
    print_json([_model_line(r) for r in rows])


def _train_finetuned(params: dict[str, Any]) -> None:
    """Queue the fine-tuning job and run it here (unless a running server leads)."""
    from vitrine.jobs.cnn_jobs import finetune_config

    vitrine = open_vitrine()
    try:
        finetune_config(params, vitrine)  # bad options fail now, not in the job
        finished = run_job_here(vitrine, vitrine.cnn.finetune(params, "command line"))
    except ValueError as exc:
        fail(str(exc))
    finally:
        vitrine.close()
    if finished["state"] in ("queued", "running"):  # the running server does it
        print_json(finished)
        return
    if finished["state"] != "done":
        fail(f"fine-tuning {finished['state']}: {finished.get('error')}")
    result = finished["result"]
    print_json(result | {"to_switch": f"vitrine model switch {result['version']}"})


def _model_line(row: dict[str, Any]) -> dict[str, Any]:
    from vitrine.classify.registry import model_summary

    line = model_summary(row)
    line.pop("comparison", None)
    line["decision"] = (row.get("comparison") or {}).get("reason")
    return line


def evaluate(
    ctx: typer.Context,
    field: Annotated[str | None, typer.Option(help="The label field.")] = None,
    model_id: Annotated[
        int | None, typer.Option("--id", help="A model id (default: active).")
    ] = None,
    full: Annotated[bool, typer.Option(help="Print every metric as JSON.")] = False,
) -> None:
    """Print a field model's held-out evaluation (`--field`), or evaluate the
    recommendation algorithms offline (`vitrine evaluate recommendations --split-date`)."""
    from vitrine.classify.registry import ModelRegistry, UnknownModelError

    if ctx.invoked_subcommand is not None:
        return
    if field is None:
        fail("give --field FIELD (a classifier's evaluation) or the `recommendations` command")
    assert field is not None

    vitrine = open_vitrine()
    registry = ModelRegistry(vitrine.engine, vitrine.blobs)
    try:
        row = registry.get(model_id) if model_id is not None else registry.active_for(field)
    except UnknownModelError:
        row = None
    if row is None or row["field"] != field:
        fail(f"no {'such' if model_id else 'active'} model for field {field!r}")
    assert row is not None
    if full:
        print_json({**_model_line(row), "metrics": row["metrics"], "params": row["params"]})
        return
    typer.echo(format_evaluation(row))


def format_evaluation(row: dict[str, Any]) -> str:
    """A readable report of a model's metrics."""
    m = row["metrics"]
    out = [f"{row['version']} ({'active' if row['active'] else 'inactive'}): {m['field']}"]
    split = m["split"]
    out.append(
        f"train {split['train']}  calibration {split['calibration']}  "
        f"evaluation {split['evaluation']}  features {'+'.join(row['feature_groups'])}"
    )
    a = m.get("all")
    if not a:
        return "\n".join([*out, m.get("note", "no evaluation")])
    out.append(
        f"accuracy {a['accuracy']:.4f}  top-k {a.get('top_k')}\n"
        f"macro    P {a['macro']['precision']:.4f}  R {a['macro']['recall']:.4f}  "
        f"F1 {a['macro']['f1']:.4f}\n"
        f"weighted P {a['weighted']['precision']:.4f}  R {a['weighted']['recall']:.4f}  "
        f"F1 {a['weighted']['f1']:.4f}"
    )
    rare = m["rare"]
    if rare["classes"]:
        fc = m.get("frequent_classes", {})
        out.append(
            f"rare classes ({rare['policy']}, < {rare['min_support']} examples): "
            f"{len(rare['classes'])}, {rare['evaluation_rows']} evaluation rows "
            f"(counted as errors); accuracy on the other rows {fc.get('accuracy')}"
        )
    cal = m["all"]["calibration"]
    out.append(
        f"calibration: ECE {cal['ece']} (head before/after temperature "
        f"{m.get('head_calibration_ece')}); review: {m['review']}"
    )
    out.append(f"{'class':32s} {'P':>7s} {'R':>7s} {'F1':>7s} {'support':>8s}")
    for name, c in sorted(a["per_class"].items(), key=lambda kv: -kv[1]["support"]):
        flag = " (rare)" if c.get("rare") else ""
        out.append(
            f"{name[:32]:32s} {c['precision']:7.3f} {c['recall']:7.3f} {c['f1']:7.3f} "
            f"{c['support']:8d}{flag}"
        )
    return "\n".join(out)


def feedback(
    product_id: Annotated[str, typer.Argument(help="The product.")],
    field: Annotated[str, typer.Argument(help="The label field.")],
    value: Annotated[str, typer.Argument(help="Its correct value.")],
) -> None:
    """Record a correction: the product's label changes at once and trains the next model."""
    from vitrine.classify.service import UnknownProductError

    vitrine = open_vitrine()
    try:
        print_json(vitrine.classification.feedback(product_id, field, value))
    except UnknownProductError:
        fail(f"product {product_id!r} does not exist")
    except ValueError as exc:
        fail(str(exc))


def export_labels(
    out: Annotated[Path, typer.Argument(help="CSV file to write.")],
    fields: Annotated[str | None, typer.Option(help="Fields (default: all labelled).")] = None,
) -> None:
    """One row per product: each field's value, source (human / model) and confidence."""
    vitrine = open_vitrine()
    chosen = parse_fields(fields) if fields else None
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        for chunk in vitrine.classification.labels_csv(chosen):
            handle.write(chunk)
    typer.echo(f"wrote {vitrine.store.count_products()} products to {out}")


@models_app.command("list")
def models_list(field: Annotated[str | None, typer.Option(help="Only this field.")] = None) -> None:
    """Model versions with their headline metrics."""
    from vitrine.classify.registry import ModelRegistry

    vitrine = open_vitrine()
    print_json([_model_line(r) for r in ModelRegistry(vitrine.engine, vitrine.blobs).list(field)])


@models_app.command("activate")
def models_activate(model_id: Annotated[int, typer.Argument(help="Model id.")]) -> None:
    """Make a model version its field's active one (then label the catalog with it)."""
    from vitrine.classify.registry import UnknownModelError

    vitrine = open_vitrine()
    try:
        row = vitrine.classification.activate(model_id)
        run_queued_jobs(vitrine)
    except UnknownModelError:
        fail(f"model {model_id} does not exist")
    finally:
        vitrine.close()
    print_json(_model_line(row))


@models_app.command("rollback")
def models_rollback(field: Annotated[str, typer.Argument(help="Label field.")]) -> None:
    """Re-activate the field's previously active version (then label the catalog)."""
    from vitrine.classify.registry import UnknownModelError

    vitrine = open_vitrine()
    try:
        row = vitrine.classification.rollback(field)
        run_queued_jobs(vitrine)
    except UnknownModelError as exc:
        fail(str(exc.args[0]))
    finally:
        vitrine.close()
    print_json(_model_line(row))


def train_tag(
    name: Annotated[str, typer.Argument(help="Tag name, e.g. pattern.")],
    csv_path: Annotated[Path, typer.Option("--csv", help="A labelled catalog CSV.")],
    images: Annotated[Path, typer.Option("--images", help="Folder of its photos.")],
    column: Annotated[
        str, typer.Option(help="Column with the tag, e.g. graphical_appearance_name.")
    ],
    id_column: Annotated[str, typer.Option(help="Column with the product id.")] = "id",
    image_path: Annotated[str | None, typer.Option(help="Image path template.")] = None,
    limit: Annotated[int | None, typer.Option(help="Use at most this many rows.")] = None,
    groups: Annotated[
        str | None, typer.Option(help="Feature groups, e.g. pattern+texture.")
    ] = None,
) -> None:
    """Train a tag model (e.g. the pattern) from any labelled catalog, usable on every catalog.

    The catalog's photos are analysed here and not stored; only the model is kept.
    """
    from vitrine.catalog.csv_source import ColumnMapping
    from vitrine.classify.trainer import TrainingError
    from vitrine.jobs.tag_training import train_tag_model

    if not csv_path.is_file():
        fail(f"{csv_path}: no such CSV file")
    if not images.is_dir():
        fail(f"{images}: no such image folder")
    vitrine = open_vitrine()
    mapping = ColumnMapping(id_column=id_column, image_path=image_path)
    try:
        rows = train_tag_model(
            vitrine,
            name,
            csv_path,
            images,
            mapping,
            column,
            limit=limit,
            groups=groups.split("+") if groups else None,
        )
    except (TrainingError, ValueError) as exc:
        fail(str(exc))
    finally:
        vitrine.close()
    print_json([_model_line(r) for r in rows])
