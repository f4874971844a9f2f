"""Serverless trigger: an S3 ``ObjectCreated`` event adds the new photo to its product.

Deploy with ``vitrine.aws.handler`` as the function's handler, the same ``VITRINE_*``
settings as the service (PostgreSQL + the bucket) and an S3 event notification on
the upload prefix. For each new object the handler fetches the photo, analyzes it
(features, embedding, labels), runs the classification hooks and upserts the product;
every running API process then picks the change up from the database's change feed.

The product id is the object's ``x-amz-meta-product-id`` metadata when present, else
the file name without its extension (``incoming/15970.jpg`` -> ``15970``). Optional
metadata ``title`` and ``attributes`` (a JSON object) fill a new product. Photos in the
blob store's own bucket and prefix are referenced where they are; photos elsewhere are
copied into the store. S3 delivers events at least once: handling one twice changes
nothing (a photo a product already has is skipped).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus

from vitrine.catalog.products import Upload
from vitrine.catalog.s3 import S3BlobStore, S3Options, make_s3_client
from vitrine.catalog.store import ProductRecord
from vitrine.config import load_settings
from vitrine.runtime import Runtime
from vitrine.vision.decode import ImageDecodeError

log = logging.getLogger(__name__)

# Called after a photo is stored, with (vitrine, product id). Classification registers
# itself here (e.g. to label the product with the shop's categories); the handler runs
# each hook and reports its failure without losing the stored photo.
ClassifyHook = Callable[[Runtime, str], Any]
CLASSIFY_HOOKS: list[ClassifyHook] = []

_vitrine: Runtime | None = None


@dataclass
class ObjectCreated:
    bucket: str
    key: str
    size: int | None = None


def parse_event(event: dict[str, Any]) -> list[ObjectCreated]:
    """The ObjectCreated records of an S3 event notification (other records are ignored)."""
    records = event.get("Records")
    if not isinstance(records, list):
        raise ValueError("not an S3 event: no 'Records' list")
    found = []
    for record in records:
        name = str(record.get("eventName", ""))
        s3 = record.get("s3") or {}
        if not name.startswith("ObjectCreated") or "bucket" not in s3 or "object" not in s3:
            continue
        found.append(
            ObjectCreated(
                bucket=s3["bucket"]["name"],
                key=unquote_plus(s3["object"]["key"]),  # keys arrive URL-encoded
                size=s3["object"].get("size"),
            )
        )
    return found


def product_id_for(key: str, metadata: dict[str, str]) -> str:
    pid = metadata.get("product-id") or PurePosixPath(key).stem
    if not pid or "/" in pid or len(pid) > 128:
        raise ValueError(f"{key}: no usable product id (set x-amz-meta-product-id)")
    return pid


def _runtime() -> Runtime:
    """One Vitrine per container, kept warm between invocations."""
    global _vitrine
    if _vitrine is None:
        _vitrine = Runtime(load_settings())
    return _vitrine


def handle_object(vitrine: Runtime, created: ObjectCreated, client: Any) -> dict[str, Any]:
    """Add one new photo to its product; returns what was done."""
    head = client.head_object(Bucket=created.bucket, Key=created.key)
    metadata = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    pid = product_id_for(created.key, metadata)
    limit = vitrine.settings.max_image_bytes
    if int(head.get("ContentLength", 0)) > limit:
        raise ImageDecodeError(created.key, f"file is larger than the limit of {limit} bytes")
    data = client.get_object(Bucket=created.bucket, Key=created.key)["Body"].read()
    blobs = vitrine.blobs
    in_store = isinstance(blobs, S3BlobStore) and blobs.bucket == created.bucket
    blob_key = blobs.blob_key(created.key) if in_store else None  # type: ignore[union-attr]
    attributes = json.loads(metadata["attributes"]) if "attributes" in metadata else {}
    if not isinstance(attributes, dict):
        raise ValueError(f"{created.key}: metadata 'attributes' must be a JSON object")
    product = ProductRecord(id=pid, title=metadata.get("title"), attributes=attributes)
    saved, added = vitrine.products.add_photo(product, Upload(data, created.key, blob_key=blob_key))
    hooks = []
    for hook in CLASSIFY_HOOKS:
        try:
            hook(vitrine, pid)
            hooks.append({"hook": getattr(hook, "__name__", str(hook)), "ok": True})
        except Exception as exc:  # the photo is stored: report, do not fail the event
            log.exception("classification hook failed for %s", pid)
            hooks.append({"hook": getattr(hook, "__name__", str(hook)), "error": str(exc)})
    return {
        "key": created.key,
        "product_id": pid,
        "added": added,
        "images": len(saved["images"]),
        "referenced": blob_key is not None,
        "classification": hooks,
    }


def handler(event: dict[str, Any], context: Any = None, vitrine: Runtime | None = None) -> dict:
    """AWS Lambda entry point for S3 event notifications.

    A bad photo or key is reported in the result (``failed``) and the other records are
    still handled; the invocation fails (so that S3 / Lambda retry it) only when nothing
    could be handled because of an error that is not the photo's fault.
    """
    vitrine = vitrine or _runtime()
    client = make_s3_client(S3Options.from_settings(vitrine.settings))
    done, failed = [], []
    for created in parse_event(event):
        try:
            done.append(handle_object(vitrine, created, client))
        except (ImageDecodeError, ValueError) as exc:
            log.warning("s3 event: %s rejected: %s", created.key, exc)
            failed.append({"key": created.key, "error": str(exc)})
    return {"processed": done, "failed": failed}
