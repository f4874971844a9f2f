"""Spark jobs (``pip install 'vitrine[spark]'``, Java 17): batch embedding, analytics, ALS.

Each job is a plain function taking a SparkSession, so that it runs the same in
``local[N]`` mode, under ``spark-submit`` on a cluster, or from a notebook.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def spark_session(master: str | None = None, app_name: str = "vitrine", **conf: str) -> Any:
    """A SparkSession; ``master`` defaults to what spark-submit set, else ``local[*]``."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # the extra is optional
        raise RuntimeError("Spark jobs need the spark extra: pip install 'vitrine[spark]'") from exc
    # Python workers run this interpreter (with Vitrine installed) unless told otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit the gateway already runs with the submitted --master: keep it.
    if master or "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(master or "local[*]")
    defaults = {
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.session.timeZone": "UTC",
        # Executors run Vitrine's own single-threaded ONNX model per task.
        "spark.python.worker.reuse": "true",
    }
    for key, value in {**defaults, **conf}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
