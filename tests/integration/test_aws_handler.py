"""The serverless trigger with a real S3 event payload against the real S3 server (Swift s3api)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from backends import Backend, make_backend
from vitrine import aws
from vitrine.catalog.s3 import S3BlobStore
from vitrine.runtime import Runtime

pytestmark = pytest.mark.integration


def s3_event(bucket: str, *keys: str, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """An S3 event notification as S3 sends it (structure version 2.1)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-21T12:00:00.000Z",
                "eventName": name,
                "userIdentity": {"principalId": "AWS:EXAMPLE"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "vitrine-uploads",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "EXAMPLE"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": 1024,
                        "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                        "sequencer": "0055AED6DCD90281E5",
                    },
                },
            }
            for key in keys
        ]
    }


@pytest.fixture()
def vitrine(tmp_path: Path, model_dir: Path, request: pytest.FixtureRequest) -> Iterator[Runtime]:
    backend: Backend = make_backend("server", request)
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_dir, target_is_directory=True)
    v = Runtime(backend.settings(home))
    yield v
    v.close()


def test_s3_upload_event_adds_products(vitrine: Runtime, data_dir: Path) -> None:
    blobs = vitrine.blobs
    assert isinstance(blobs, S3BlobStore)
    client, bucket = blobs.client, blobs.bucket
    photos = sorted((data_dir / "fashion-small" / "images").glob("*.jpg"))[:3]
    inside = f"{blobs.prefix}/incoming/{photos[0].stem} front.jpg"  # in the store: referenced
    tagged = f"{blobs.prefix}/incoming/upload-7.jpg"  # id from metadata
    outside = f"elsewhere/{photos[2].stem}.jpg"  # outside the store's prefix: copied in
    broken = f"{blobs.prefix}/incoming/broken.jpg"
    client.put_object(Bucket=bucket, Key=inside, Body=photos[0].read_bytes())
    client.put_object(
        Bucket=bucket,
        Key=tagged,
        Body=photos[1].read_bytes(),
        Metadata={
            "product-id": "sku-7",
            "title": "Tagged upload",
            "attributes": json.dumps({"season": "Summer"}),
        },
    )
    client.put_object(Bucket=bucket, Key=outside, Body=photos[2].read_bytes())
    client.put_object(Bucket=bucket, Key=broken, Body=b"\xff\xd8 not really a jpeg")
    classified: list[str] = []
    aws.CLASSIFY_HOOKS.append(lambda _v, pid: classified.append(pid))
    try:
        event = s3_event(bucket, inside, tagged, outside, broken)
        event["Records"].append({**event["Records"][0], "eventName": "ObjectRemoved:Delete"})
        result = aws.handler(event, None, vitrine=vitrine)
    finally:
        aws.CLASSIFY_HOOKS.clear()

    by_key = {r["key"]: r for r in result["processed"]}
    assert set(by_key) == {inside, tagged, outside}
    assert [f["key"] for f in result["failed"]] == [broken]
    assert by_key[inside]["product_id"] == f"{photos[0].stem} front"
    assert by_key[inside]["referenced"] and not by_key[outside]["referenced"]
    assert sorted(classified) == sorted(r["product_id"] for r in result["processed"])

    product = vitrine.store.get_product("sku-7")
    assert product is not None and product["title"] == "Tagged upload"
    assert product["attributes"] == {"season": "Summer"}
    referenced = vitrine.store.get_product(f"{photos[0].stem} front")
    assert referenced is not None
    assert referenced["images"][0]["blob_key"] == f"incoming/{photos[0].stem} front.jpg"
    copied = vitrine.store.get_product(photos[2].stem)
    assert copied is not None and copied["images"][0]["blob_key"].startswith("images/")
    assert blobs.get(copied["images"][0]["blob_key"]) == photos[2].read_bytes()
    # Searchable at once, and by photo.
    hits = vitrine.search.similar("sku-7", k=5)
    assert {h.product_id for h in hits} == {f"{photos[0].stem} front", photos[2].stem}

    # S3 may deliver an event twice: nothing changes.
    again = aws.handler(s3_event(bucket, tagged), None, vitrine=vitrine)
    assert again["processed"][0]["added"] is False and again["processed"][0]["images"] == 1


def test_bad_events_are_refused_clearly(vitrine: Runtime) -> None:
    with pytest.raises(ValueError, match="Records"):
        aws.handler({"detail": {}}, None, vitrine=vitrine)
    assert aws.handler({"Records": []}, None, vitrine=vitrine) == {"processed": [], "failed": []}
