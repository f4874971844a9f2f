"""Products (create, replace, change, read, list, delete, their photos) and bulk imports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vitrine_client.calls import (
    NO_CONTENT,
    UNSET,
    Call,
    Filters,
    Unset,
    Upload,
    filter_list,
    uploads,
)
from vitrine_client.models import Cards, ImportJob, Product, ProductCreated, ProductPage
from vitrine_client.operation import operation


def _saved(
    images: Upload | Sequence[Upload] | None,
    image_keys: Sequence[str] | None,
    path: Mapping[str, str],
    **form: Any,
) -> Call[ProductCreated]:
    """A product's multipart form: creating and replacing send the same one."""
    return Call(
        ProductCreated,
        path=path,
        form={**form, "image_keys": list(image_keys or [])},
        files=[("images", image) for image in uploads(images)],
    )


class ProductOperations:
    """/v1/products and /v1/imports."""

    @operation("POST", "/v1/products")
    def create_product(
        id: str,
        images: Upload | Sequence[Upload] | None = None,
        *,
        image_keys: Sequence[str] | None = None,
        title: str | None = None,
        description: str | None = None,
        price: float | None = None,
        available: bool | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Call[ProductCreated]:
        """Add a product with its photos (bytes, paths or files; the first is primary) or
        photos already in the blob store (``image_keys``); searchable when this returns.
        Raises ``Conflict`` if the product exists."""
        return _saved(
            images,
            image_keys,
            {},
            id=id,
            title=title,
            description=description,
            price=price,
            available=available,
            attributes=attributes,
        )

    @operation("PUT", "/v1/products/{product_id}")
    def replace_product(
        product_id: str,
        images: Upload | Sequence[Upload] | None = None,
        *,
        image_keys: Sequence[str] | None = None,
        title: str | None = None,
        description: str | None = None,
        price: float | None = None,
        available: bool | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Call[ProductCreated]:
        """Create or replace a product and all of its photos."""
        return _saved(
            images,
            image_keys,
            {"product_id": product_id},
            title=title,
            description=description,
            price=price,
            available=available,
            attributes=attributes,
        )

    @operation("PATCH", "/v1/products/{product_id}")
    def update_product(
        product_id: str,
        *,
        title: str | Unset | None = UNSET,
        description: str | Unset | None = UNSET,
        price: float | Unset | None = UNSET,
        available: bool | Unset = UNSET,
        attributes: Mapping[str, Any] | Unset = UNSET,
    ) -> Call[Product]:
        """Change some fields; ``None`` clears title, description or price. Attributes
        are merged (an attribute set to ``None`` is removed)."""
        body = {
            "title": title,
            "description": description,
            "price": price,
            "available": available,
            "attributes": attributes,
        }
        return Call(Product, path={"product_id": product_id}, json=body)

    @operation("GET", "/v1/products/{product_id}")
    def get_product(product_id: str) -> Call[Product]:
        """One product with its photos, colours, labels and categories."""
        return Call(Product, path={"product_id": product_id})

    @operation("GET", "/v1/products/{product_id}/images/{image_id}")
    def get_product_image(product_id: str, image_id: int) -> Call[bytes]:
        """A product's photo as stored (its bytes)."""
        return Call(bytes, path={"product_id": product_id, "image_id": image_id})

    @operation("DELETE", "/v1/products/{product_id}")
    def delete_product(product_id: str) -> Call[None]:
        """Delete a product and its photos."""
        return Call(NO_CONTENT, path={"product_id": product_id})

    @operation("GET", "/v1/products")
    def list_products(
        *,
        limit: int | None = None,
        cursor: str | None = None,
        available: bool | None = None,
        filter: Filters | None = None,
    ) -> Call[ProductPage]:
        """Products in id order, a page at a time: pass ``next_cursor`` back as ``cursor``."""
        query = {
            "limit": limit,
            "cursor": cursor,
            "available": available,
            "filter": filter_list(filter),
        }
        return Call(ProductPage, query=query)

    # -- imports -------------------------------------------------------------------------

    @operation("POST", "/v1/imports")
    def create_import(
        csv: Upload | None = None,
        images: Upload | None = None,
        *,
        csv_path: str | None = None,
        images_dir: str | None = None,
        id_column: str | None = None,
        image_path: str | None = None,
        image_column: str | None = None,
        title_column: str | None = None,
        price_column: str | None = None,
        encoding: str | None = None,
    ) -> Call[ImportJob]:
        """Queue an import of a products CSV and a zip of its photos (or of a CSV and a
        folder under the server's import root); follow it with ``get_import``."""
        form = {
            "csv_path": csv_path,
            "images_dir": images_dir,
            "id_column": id_column,
            "image_path": image_path,
            "image_column": image_column,
            "title_column": title_column,
            "price_column": price_column,
            "encoding": encoding,
        }
        files = [(name, f) for name, f in (("csv", csv), ("images", images)) if f is not None]
        return Call(ImportJob, form=form, files=files)

    @operation("GET", "/v1/imports/{job_id}")
    def get_import(job_id: str) -> Call[ImportJob]:
        """An import job's progress and rejected rows."""
        return Call(ImportJob, path={"job_id": job_id})

    @operation("GET", "/v1/imports")
    def list_imports(*, limit: int | None = None) -> Call[list[ImportJob]]:
        """The latest import jobs."""
        return Call(list[ImportJob], query={"limit": limit})

    @operation("GET", "/v1/cards")
    def product_cards(id: Sequence[str]) -> Call[Cards]:
        """Product cards (title, price, photo address, page link) for a storefront, in
        the order asked; ids that do not exist are left out."""
        return Call(Cards, query={"id": list(id)})
