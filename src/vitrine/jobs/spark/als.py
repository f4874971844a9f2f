"""``vitrine spark train-als``: MLlib ALS on the event log, for catalogs one process cannot hold.

Events are weighted by type with the recommender's own weights (a purchase says more
than a view; negative types take interest away), summed per (customer, product), and
the pairs with a positive strength are factorised with implicit-feedback ALS. The
factors are written with the original ids as Parquet (``user_factors``,
``item_factors``: ``id``, ``features``), with ``als_summary.json`` (the parameters);
the recommender's ``als_factors`` algorithm serves from them
(``VITRINE_RECOMMEND_ALS_FACTORS``). Nothing is collected to the driver.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vitrine.recommend.events import DEFAULT_EVENT_WEIGHTS


@dataclass(frozen=True)
class AlsParams:
    """ALS hyper-parameters of the Spark job."""

    rank: int = 64
    reg: float = 0.05
    alpha: float = 20.0
    iterations: int = 10
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    seed: int = 7
    blocks: int = 10  # user and item blocks (parallelism of each ALS step)
    # Cuts the lineage every 10 iterations (long runs otherwise overflow the JVM stack);
    # on a cluster, storage every executor reaches (HDFS, S3).
    checkpoint_dir: str | None = None


def train_als(spark: Any, events: Any, output: Path, params: AlsParams | None = None) -> dict:
    """Fit ALS on an events DataFrame (user_id, product_id, type, ...); returns a summary."""
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    params = params or AlsParams()
    if params.checkpoint_dir:
        spark.sparkContext.setCheckpointDir(params.checkpoint_dir)
    weight = F.create_map(*[F.lit(x) for kv in params.weights.items() for x in kv])
    pairs = (
        events.withColumn("w", F.coalesce(weight[F.col("type")], F.lit(0.0)))
        .groupBy("user_id", "product_id")
        .agg(F.sum("w").alias("strength"))
        .where(F.col("strength") > 0)
    )
    if pairs.limit(1).count() == 0:
        raise ValueError("no events of a weighted type: nothing to train on")
    users = StringIndexer(inputCol="user_id", outputCol="u").fit(pairs)
    items = StringIndexer(inputCol="product_id", outputCol="i").fit(pairs)
    indexed = items.transform(users.transform(pairs)).select(
        F.col("u").cast("int"), F.col("i").cast("int"), "strength"
    )
    model = ALS(
        rank=params.rank,
        regParam=params.reg,
        alpha=params.alpha,
        maxIter=params.iterations,
        implicitPrefs=True,
        userCol="u",
        itemCol="i",
        ratingCol="strength",
        coldStartStrategy="drop",
        seed=params.seed,
        numUserBlocks=params.blocks,
        numItemBlocks=params.blocks,
    ).fit(indexed)

    output.mkdir(parents=True, exist_ok=True)
    for name, factors, labels in (
        ("user_factors", model.userFactors, users.labels),
        ("item_factors", model.itemFactors, items.labels),
    ):
        ids = spark.createDataFrame(list(enumerate(labels)), ["id", "key"])
        frame = factors.join(ids, "id").select(F.col("key").alias("id"), "features")
        frame.write.mode("overwrite").parquet(str(output / name))
    summary = {
        "users": len(users.labels),
        "items": len(items.labels),
        "pairs": indexed.count(),
        "params": asdict(params),
        "output": str(output),
    }
    (output / "als_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
