"""Photo sources named by a local folder or an S3 prefix, listed once and read one by one.

``s3://bucket/prefix`` (or ``s3a://``) is listed and read with boto3 (credentials from
the standard AWS environment), so Spark executors need no Hadoop S3 connector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitrine.catalog.s3 import S3Options, make_s3_client, parse_s3_url
from vitrine.vision.decode import DecodeLimits, ImageTooLargeError, read_image_bytes

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def is_s3(location: str) -> bool:
    return location.startswith(("s3://", "s3a://"))


def list_photos(location: str, s3: S3Options | None = None) -> list[str]:
    """Every photo under a folder or S3 prefix, as paths or ``s3://bucket/key`` URIs, sorted."""
    if is_s3(location):
        bucket, prefix = parse_s3_url(location)
        client = make_s3_client(s3 or S3Options())
        found = []
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
        )
        for page in pages:
            for item in page.get("Contents", []):
                if Path(item["Key"]).suffix.lower() in IMAGE_SUFFIXES:
                    found.append(f"s3://{bucket}/{item['Key']}")
        return sorted(found)
    root = Path(location)
    if not root.is_dir():
        raise ValueError(f"{location}: no such folder")
    return sorted(
        str(p.resolve())
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


class PhotoReader:
    """Reads photos by path or S3 URI, refusing files above the byte limit."""

    def __init__(self, limits: DecodeLimits, s3: S3Options | None = None) -> None:
        self.limits = limits
        self.s3 = s3 or S3Options()
        self._client: Any = None

    def read(self, source: str) -> bytes:
        if not is_s3(source):
            return read_image_bytes(Path(source), self.limits)
        if self._client is None:
            self._client = make_s3_client(self.s3)
        bucket, key = parse_s3_url(source)
        response = self._client.get_object(Bucket=bucket, Key=key)
        if int(response.get("ContentLength", 0)) > self.limits.max_bytes:
            raise ImageTooLargeError(
                source, f"file is larger than the limit of {self.limits.max_bytes} bytes"
            )
        return bytes(response["Body"].read())
