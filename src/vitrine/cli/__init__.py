"""The ``vitrine`` command line: import, analyze, search, serve and maintain.

This module builds the root app from the command modules: top-level commands and sub-apps are
registered here, in the order ``vitrine --help`` lists them. The ``evaluate`` group is composed
here too: its callback is the classifier evaluation (``classify``), its ``recommendations``
command the offline recommendation evaluation (``recommend``).

Heavy imports stay inside the commands, so that ``vitrine --help`` starts fast. This file also
runs as a script (``spark-submit .../vitrine/cli/__init__.py spark ...``), hence the absolute
imports and the ``__main__`` guard.
"""

from __future__ import annotations

import sys

import typer

from vitrine.cli import (
    ads,
    catalog,
    classify,
    db,
    index,
    jobs,
    keys,
    model,
    recommend,
    scenes,
    serve,
    spark,
    users,
)

app = typer.Typer(
    help="Vitrine: visual intelligence for e-commerce catalogs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

evaluate_app = typer.Typer(help="Held-out evaluations: classifiers, recommendations.")
evaluate_app.callback(invoke_without_command=True)(classify.evaluate)
evaluate_app.command("recommendations")(recommend.evaluate_recommendations)

app.command("import-catalog")(catalog.import_catalog_cmd)
app.command("analyze")(catalog.analyze)
app.command("search")(catalog.search)
app.command("similar")(catalog.similar)
app.command("search-scene")(scenes.search_scene)
app.command("feed")(ads.feed)
app.command("serve")(serve.serve)
app.command("import-events")(recommend.import_events_cmd)
app.command("recommend")(recommend.recommend)
app.command("train-recommendations")(recommend.train_recommendations)
app.command("evaluate-recommendations")(recommend.evaluate_recommendations)
app.command("import-features")(catalog.import_features_cmd)
app.command("train")(classify.train)
app.command("feedback")(classify.feedback)
app.command("export-labels")(classify.export_labels)
app.command("train-tag")(classify.train_tag)

app.add_typer(model.model_app, name="model")
app.add_typer(index.index_app, name="index")
app.add_typer(db.db_app, name="db")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(recommend.strategies_app, name="strategies")
app.add_typer(users.users_app, name="users")
app.add_typer(classify.models_app, name="models")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(spark.spark_app, name="spark")
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(scenes.localizer_app, name="localizer")
app.add_typer(ads.ads_app, name="ads")
app.command("label-catalog")(jobs.label_catalog)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
