"""``vitrine spark embed``: features and CNN embeddings of many photos, written as Parquet.

The photo list (a folder or an S3 prefix) is split over Spark tasks; each task loads
the ONNX model once (shipped to the executors with ``SparkContext.addFile``) and runs
Vitrine's own per-photo pipeline on chunks of photos: decode, colour / texture /
shape / pattern features, then one CNN call per chunk. A photo that cannot be used
becomes a row with ``error`` set; nothing else is lost. ``vitrine import-features``
loads the result into the catalog without computing anything again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from vitrine.catalog.s3 import S3Options
from vitrine.catalog.store import vector_to_bytes as vector_bytes
from vitrine.jobs.sources import PhotoReader, list_photos
from vitrine.vision.decode import DecodeLimits
from vitrine.vision.features import FEATURE_VERSION

# Columns of the Parquet output, in order.
COLUMNS = [
    "path",
    "product_id",
    "content_hash",
    "format",
    "width",
    "height",
    "byte_size",
    "model_version",
    "feature_version",
    "embedding",
    "labels",
    "summary",
    "vectors",
    "error",
]


def schema() -> Any:
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("path", T.StringType(), False),
            T.StructField("product_id", T.StringType(), False),
            T.StructField("content_hash", T.StringType()),
            T.StructField("format", T.StringType()),
            T.StructField("width", T.IntegerType()),
            T.StructField("height", T.IntegerType()),
            T.StructField("byte_size", T.LongType()),
            T.StructField("model_version", T.StringType()),
            T.StructField("feature_version", T.StringType()),
            T.StructField("embedding", T.BinaryType()),  # float32 little-endian, unit norm
            T.StructField("labels", T.StringType()),  # JSON [{"name", "confidence"}]
            T.StructField("summary", T.StringType()),  # JSON, as `vitrine analyze` shows
            T.StructField("vectors", T.MapType(T.StringType(), T.BinaryType())),  # float32
            T.StructField("error", T.StringType()),
        ]
    )


def product_id_of(path: str) -> str:
    return PurePosixPath(path).stem


def embed_partition(
    sources: Iterable[str],
    model_file: str,
    precision: str,
    limits: DecodeLimits,
    s3: S3Options,
    chunk: int,
) -> Iterator[tuple[Any, ...]]:
    """Runs in one Spark task: the model is loaded once, photos go through in chunks."""
    import cv2
    from pyspark import SparkFiles

    from vitrine.vision.analyzer import ImageAnalyzer, prepare
    from vitrine.vision.embedding import Embedder

    cv2.setNumThreads(1)
    model_dir = Path(SparkFiles.get(model_file)).parent
    analyzer = ImageAnalyzer(Embedder(model_dir, precision=precision, threads=1), limits)  # type: ignore[arg-type]
    reader = PhotoReader(limits, s3)
    pending: list[Any] = []

    def flush() -> Iterator[tuple[Any, ...]]:
        for analysis in analyzer.complete(pending):
            p = analysis.prepared
            yield (
                p.source,
                product_id_of(p.source),
                p.content_hash,
                p.format,
                p.width,
                p.height,
                p.byte_size,
                analysis.model_version,
                FEATURE_VERSION,
                vector_bytes(analysis.embedding),
                json.dumps(
                    [{"name": lb.name, "confidence": lb.confidence} for lb in analysis.labels]
                ),
                json.dumps(p.features.summary()),
                {k: vector_bytes(v) for k, v in p.aspect_vectors().items()},
                None,
            )
        pending.clear()

    for source in sources:
        try:
            pending.append(prepare(reader.read(source), source, limits))
        except Exception as exc:  # one bad photo never stops the job
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
            yield (source, product_id_of(source), *([None] * 11), reason)
        if len(pending) >= chunk:
            yield from flush()
    if pending:
        yield from flush()


def embed(
    spark: Any,
    input_location: str,
    output: str,
    *,
    model_dir: Path,
    precision: str = "fp32",
    limits: DecodeLimits = DecodeLimits(),
    s3: S3Options | None = None,
    partitions: int | None = None,
    chunk: int = 32,
    limit: int | None = None,
) -> dict[str, Any]:
    """Embed every photo under ``input_location`` into Parquet at ``output``; returns counts."""
    from vitrine.vision.embedding import Embedder

    s3 = s3 or S3Options()
    sources = list_photos(input_location, s3)[:limit]
    if not sources:
        raise ValueError(f"{input_location}: no photos found")
    # Export the model once on the driver, then ship the file to every executor.
    model_path = Embedder(model_dir, precision=precision, threads=1, top_labels=0).model_path  # type: ignore[arg-type]
    sc = spark.sparkContext
    sc.addFile(str(model_path))
    slices = partitions or max(sc.defaultParallelism, len(sources) // 2000 + 1)
    name = model_path.name
    rows = sc.parallelize(sources, slices).mapPartitions(
        lambda items: embed_partition(items, name, precision, limits, s3, chunk)
    )
    frame = spark.createDataFrame(rows, schema())
    frame.write.mode("overwrite").parquet(output)
    written = spark.read.parquet(output)
    failed = written.where("error IS NOT NULL").count()
    total = written.count()
    return {"photos": total, "embedded": total - failed, "failed": failed, "output": output}
