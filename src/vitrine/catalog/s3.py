"""Photos in an S3-compatible bucket (AWS S3, MinIO, Ceph, Swift's s3api), via boto3.

``s3://bucket/prefix`` names the bucket and an optional key prefix; the endpoint,
region and addressing style come from settings. Credentials are never passed here:
boto3 finds them in the standard AWS environment variables, shared files or profile,
and they are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from vitrine.catalog.blobs import BlobNotFoundError, check_key
from vitrine.config import Settings

# botocore logs request headers (signatures) at DEBUG: keep it quiet whatever the app level.
for _name in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

_MISSING = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class S3Options:
    """Where and how to reach the S3 service; empty values use boto3's defaults."""

    endpoint_url: str = ""
    region: str = ""
    path_style: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Options:
        return cls(settings.s3_endpoint_url, settings.s3_region, settings.s3_path_style)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, 'some/prefix')."""
    parsed = urlparse(url)
    if parsed.scheme not in {"s3", "s3a"} or not parsed.netloc:
        raise ValueError(f"blob store URL {url!r}: expected s3://bucket[/prefix]")
    return parsed.netloc, parsed.path.strip("/")


def make_s3_client(options: S3Options) -> Any:
    """A boto3 S3 client for ``options`` (thread-safe; credentials from the environment)."""
    import boto3
    from botocore.config import Config

    config = Config(
        s3={"addressing_style": "path" if options.path_style else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=32,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=options.endpoint_url or None,
        region_name=options.region or None,
        config=config,
    )


def _is_missing(exc: Exception) -> bool:
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Code")) in _MISSING


class S3BlobStore:
    """Blobs as objects under ``prefix/`` in one bucket."""

    def __init__(self, url: str, options: S3Options | None = None, client: Any = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.options = options or S3Options()
        self.client = client or make_s3_client(self.options)

    def object_key(self, key: str) -> str:
        """The bucket key of a blob key."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def blob_key(self, object_key: str) -> str | None:
        """The blob key of a bucket key, or None when it lies outside this store's prefix."""
        if not self.prefix:
            return object_key
        head = self.prefix + "/"
        return object_key[len(head) :] if object_key.startswith(head) else None

    def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data, **extra)

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _is_missing(exc):
                raise BlobNotFoundError(key) from exc
            raise
        return bytes(response["Body"].read())

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        if ".." in prefix.split("/") or prefix.startswith("/"):
            raise ValueError(f"blob key prefix {prefix!r} is not a relative path")
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = self.blob_key(item["Key"])
                if key is not None:
                    yield key

    def presigned_url(self, key: str, expires: int = 3600) -> str:
        """A time-limited GET URL for one blob (for browsers or CDNs)."""
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.object_key(key)},
                ExpiresIn=expires,
            )
        )
