"""Turning catalog rows into API models."""

from __future__ import annotations

from typing import Any

from vitrine.api.schemas import ImageOut, LabelOut, NamedColor, ProductOut
from vitrine.classify.labels import product_tags, resolve_categories


def product_out(product: dict[str, Any]) -> ProductOut:
    images = product.get("images", [])
    colors: list[NamedColor] = []
    labels: list[LabelOut] = []
    primary = next((i for i in images if i["is_primary"]), images[0] if images else None)
    if primary is not None:
        for feature in primary.get("features", []):
            data = feature.get("data") or {}
            if feature["kind"] == "summary":
                for c in (data.get("color") or {}).get("colors", []):
                    colors.append(
                        NamedColor(name=c["name"], share=c["share"], lab=c["lab"], hex=c["hex"])
                    )
            elif feature["kind"] == "embedding":
                labels = [LabelOut(**lb) for lb in data.get("labels", [])]
    return ProductOut(
        id=product["id"],
        title=product.get("title"),
        description=product.get("description"),
        price=product.get("price"),
        available=bool(product.get("available", True)),
        attributes=product.get("attributes") or {},
        images=[
            ImageOut(
                id=i["id"],
                content_hash=i["content_hash"],
                format=i["format"],
                width=i["width"],
                height=i["height"],
                bytes=i["byte_size"],
                is_primary=i["is_primary"],
                url=f"/v1/products/{product['id']}/images/{i['id']}",
            )
            for i in images
        ],
        colors=colors,
        labels=labels,
        categories=resolve_categories(
            product.get("attributes") or {}, product.get("label_rows", [])
        ),
        tags=product_tags(
            primary.get("features", []) if primary is not None else [],
            product.get("label_rows", []),
        ),
        created_at=product.get("created_at"),
        updated_at=product.get("updated_at"),
    )
