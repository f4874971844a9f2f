"""Schemathesis hooks of the API contract test: real data where a schema cannot tell.

A schema says "a string" or "a file"; the API also needs a photo that is an image, a
filter of the form ``field=value``, an id that is not blank, an event type it knows. Two
mechanisms supply real data, drawn from the test's catalog (``VITRINE_CONTRACT_DATA``,
written by ``test_api_contract.seed``):

* media type strategies: the OpenAPI document names the media types of file parts
  (``encoding.contentType``: ``image/jpeg, image/png, ...``, ``text/csv``,
  ``application/zip``); the strategies registered here make those parts real photos, a
  real CSV and a real zip of photos.
* ``map_case``: for the requests schemathesis generates as *valid* (positive), values with
  a syntax or a meaning of their own (filters, weights, cursors, ids, strategies, event
  types, times) are swapped for real ones.

Invalid (negative) requests are left exactly as generated: the API must reject them.
Nothing is filtered out and no check is switched off. Draws are deterministic: a case's
own generated content seeds them, so a fixed ``--seed`` replays the same run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import zipfile
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.core import NOT_SET
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.jsonschema import make_validator
from schemathesis.core.parameters import ParameterLocation
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.transport.serialization import Binary, contains_binary
from skimage import data as skimage_data

DATA: dict[str, Any] = json.loads(Path(os.environ["VITRINE_CONTRACT_DATA"]).read_text())
EVENT_TYPES = ["view", "click", "add_to_cart", "remove_from_cart", "purchase"]
# Aspect weights. Each includes the embedding: a product added after the recommender
# trained has no other aspect yet, and ranking by none at all is a 422.
WEIGHTS = ["embedding=2,color=1", "embedding=1", "embedding=1,color=1,shape=0.5", ""]


# -- files: photos of every uploadable format, the import's CSV and zip ----------------------


def _photos(fmt: str) -> list[bytes]:
    out = []
    for path in DATA["images"]:
        with Image.open(path) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, fmt)
            out.append(buffer.getvalue())
    return out


def _photo_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(Path(DATA["import_dir"]).iterdir()):
            archive.write(path, path.name)
    return buffer.getvalue()


for _media, _fmt in {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
}.items():
    schemathesis.openapi.media_type(_media, st.sampled_from(_photos(_fmt)))
_astronaut = io.BytesIO()
Image.fromarray(skimage_data.astronaut()).save(_astronaut, "JPEG")
ASTRONAUT = _astronaut.getvalue()  # a photo with a face, for try-on
schemathesis.openapi.media_type("text/csv", st.just(Path(DATA["import_csv"]).read_bytes()))
schemathesis.openapi.media_type("application/zip", st.just(_photo_zip()))


# -- values with a syntax or meaning of their own -------------------------------------------


def _rng(case: Any) -> random.Random:
    seen = repr((case.path_parameters, case.query, case.body)).encode("utf-8", "replace")
    return random.Random(hashlib.sha256(seen).digest())


def _text(value: Any, rng: random.Random, fallback: list[str]) -> str:
    """``value`` when it is a usable identifier (not blank, no surrounding spaces)."""
    if isinstance(value, str) and value.strip() and value == value.strip():
        return value
    return rng.choice(fallback)


def _filters(rng: random.Random) -> list[str]:
    return rng.sample(DATA["filters"], rng.randint(1, 2))


def _product_id(rng: random.Random, generated: Any = None) -> str:
    """Mostly a product of the catalog; sometimes the generated one (unknown: 404)."""
    if generated is not None and rng.random() < 0.2:
        return _text(generated, rng, DATA["product_ids"])
    return rng.choice(DATA["product_ids"])


def _fix_query(query: dict[str, Any], rng: random.Random) -> None:
    if "filter" in query:
        query["filter"] = _filters(rng)
    if "strategy" in query:
        query["strategy"] = rng.choice(DATA["strategies"])
    if "weights" in query:
        query["weights"] = rng.choice(WEIGHTS)
    if "category" in query:
        query["category"] = rng.choice(DATA["categories"])
    if "cursor" in query:  # opaque: only a next_cursor the API gave is valid
        query["cursor"] = rng.choice(DATA["cursors"])
    if "user_id" in query:
        query["user_id"] = _text(query["user_id"], rng, ["u1", "u2", "new-customer"])
    if "campaign" in query:  # a campaign, or (404) another one
        query["campaign"] = rng.choice([*DATA["campaigns"], _text(query["campaign"], rng, ["x"])])
    if "field" in query:  # a label field with models, or (404) another one
        query["field"] = rng.choice([*DATA["label_fields"], _text(query["field"], rng, ["x"])])


def _fix_path(method: str, path: str, params: dict[str, Any], rng: random.Random) -> None:
    if "image_id" in params:  # a product's own photo, or (404) another one's
        product, images = rng.choice(list(DATA["product_images"].items()))
        params["product_id"], params["image_id"] = product, rng.choice(images)
        if rng.random() < 0.2:
            params["product_id"] = rng.choice(DATA["product_ids"])
    elif "product_id" in params:
        if method == "DELETE":  # removes products: only those set aside for it
            params["product_id"] = rng.choice(DATA["disposable_ids"])
        elif method == "PUT":  # creates or replaces
            params["product_id"] = rng.choice(
                [*DATA["product_ids"], f"contract-{rng.randint(1, 10**9)}"]
            )
        else:
            params["product_id"] = _product_id(rng, params["product_id"])
    if "user_id" in params:
        params["user_id"] = _text(params["user_id"], rng, ["u1", "u2", "new-customer"])
    if "webhook_id" in params and method != "DELETE" and rng.random() < 0.8:
        params["webhook_id"] = rng.choice(DATA["webhook_ids"])  # kept: never deleted
    if "model_id" in params and rng.random() < 0.8:  # else the generated one (404)
        params["model_id"] = rng.choice(DATA["model_ids"])
    if "name" in params and path.startswith("/v1/ads/"):
        # Never a seeded campaign deleted or paused: other requests serve their ads.
        if method in {"PATCH", "DELETE"}:
            params["name"] = rng.choice([f"contract-{rng.randint(1, 5)}", "contract-paused"])
        else:
            params["name"] = rng.choice(DATA["campaigns"])
    elif "name" in params:
        if method in {"PUT", "DELETE"}:  # never a built-in strategy: other requests use them
            params["name"] = f"contract-{rng.randint(1, 5)}"
        else:
            params["name"] = rng.choice([*DATA["strategies"], "contract-1"])


def _event(event: Any, rng: random.Random) -> Any:
    if not isinstance(event, dict):
        return event
    event["user_id"] = _text(event.get("user_id"), rng, ["u1", "u2", "u3"])
    event["product_id"] = _product_id(rng)
    event["type"] = rng.choice(EVENT_TYPES)
    if "timestamp" in event:  # 1970 .. now + 1 day
        event["timestamp"] = rng.choice(DATA["timestamps"])
    for name in ("event_id", "session_id", "recommendation_id", "strategy"):
        if name in event:
            event[name] = _text(event[name], rng, [f"{name}-{rng.randint(1, 10**9)}"])
    return event


def _product_form(body: dict[str, Any], rng: random.Random) -> None:
    """At least one photo (an upload or the blob key of a stored one), a JSON object of
    attributes, a price that is not negative."""
    if isinstance(body.get("images"), bytes | Binary):
        # One drawn photo: still a list of files (each part with a filename).
        body["images"] = [body["images"]]
    if "image_keys" in body or "images" not in body:
        body["image_keys"] = rng.sample(DATA["image_keys"], rng.randint(1, 2))
    if "attributes" in body:
        body["attributes"] = json.dumps({"articleType": rng.choice(DATA["categories"])})
    if isinstance(body.get("price"), int | float):
        body["price"] = abs(body["price"])


def _price_range(body: dict[str, Any]) -> None:
    """One bound at most: with both, a lowest above the highest is a 422 by design (and
    an edit's bound is judged against the campaign's stored other bound)."""
    if body.get("min_price") is not None:
        body["max_price"] = None
    elif body.get("max_price") is not None:
        body["min_price"] = None


def _fix_body(method: str, path: str, body: Any, rng: random.Random) -> Any:
    if method == "POST" and path == "/v1/products":
        _product_form(body, rng)
        body["id"] = (  # a new product, or (409) one that exists
            rng.choice(DATA["product_ids"])
            if rng.random() < 0.2
            else f"contract-{rng.randint(1, 10**9)}"
        )
    elif method == "PUT" and path == "/v1/products/{product_id}":
        _product_form(body, rng)
    elif path == "/v1/search/image":
        if "image" in body:  # exactly one of a photo and a product id
            body.pop("product_id", None)
        else:
            body["product_id"] = _product_id(rng, body.get("product_id"))
        if "filter" in body:
            body["filter"] = _filters(rng)
        if "weights" in body:
            body["weights"] = rng.choice(WEIGHTS)
    elif path == "/v1/imports":
        # An uploaded CSV (with or without its photos' zip), or one under the import root.
        if "csv" not in body:
            body.pop("images", None)
            body["csv_path"] = Path(DATA["import_csv"]).name
            body["images_dir"] = Path(DATA["import_dir"]).name
        else:
            body.pop("csv_path", None)
            body.pop("images_dir", None)
        if "encoding" in body:
            body["encoding"] = rng.choice(["utf-8", "cp1252"])
    elif path == "/v1/feedback":
        body["product_id"] = _product_id(rng)
        body["field"] = _text(body.get("field"), rng, ["articleType"])
        body["value"] = _text(body.get("value"), rng, ["Watches"])
    elif path == "/v1/events":
        if isinstance(body, list):
            body = [_event(e, rng) for e in body]
        elif isinstance(body, dict) and isinstance(body.get("events"), list):
            body["events"] = [_event(e, rng) for e in body["events"]]
        else:
            body = _event(body, rng)
    elif path == "/v1/sessions/recommendations":
        body["product_ids"] = [_product_id(rng) for _ in body.get("product_ids") or [0]]
        if body.get("strategy") is not None:
            body["strategy"] = rng.choice(DATA["strategies"])
        if body.get("filter") is not None:
            body["filter"] = _filters(rng)
        if body.get("session_id") is not None:
            body["session_id"] = _text(body["session_id"], rng, ["s1"])
    elif path == "/v1/ads/campaigns" and method == "POST":
        body["name"] = rng.choice([f"contract-{rng.randint(1, 5)}", *DATA["campaigns"]])
        _price_range(body)
    elif path == "/v1/ads/campaigns/{name}":
        _price_range(body)
    elif path == "/v1/ads/match":
        body["campaign"] = rng.choice([*DATA["campaigns"], _text(body.get("campaign"), rng, ["x"])])
    elif path == "/v1/search/scene":
        if "filter" in body:
            body["filter"] = _filters(rng)
    elif path == "/v1/tryon":
        body["photo"] = ASTRONAUT
        body["product_id"] = rng.choice(DATA["tryon_ids"] or DATA["product_ids"])
    elif path == "/v1/localizer/train" and isinstance(body, dict):
        body = {"products": 20, "scenes": 50}  # a real job: the smallest there is
    elif path.startswith("/v1/webhooks") and "url" in body:
        body["url"] = "http://127.0.0.1:9/hooks"  # a closed port: deliveries fail at once
    elif path == "/v1/cnn/switch":
        body["version"] = rng.choice(DATA["cnn_versions"])
    elif path.startswith("/v1/strategies/{name}") and method in {"PUT", "POST"}:
        body = dict(rng.choice(DATA["strategy_configs"]))
    elif path.startswith("/v1/ads/campaigns") and ("min_price" in body or "max_price" in body):
        # a price range, not two unrelated bounds (a stored bound is replaced as well)
        bounds = [body.get("min_price"), body.get("max_price")]
        low, high = bounds if None in bounds else sorted(bounds)
        body["min_price"], body["max_price"] = low, high
    elif path == "/v1/ads/match":
        body["campaign"] = _text(body.get("campaign"), rng, ["summer"])
    return body


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case  # an invalid request stays invalid
    rng = _rng(case)
    method, path = case.operation.method.upper(), case.operation.path
    if case.path_parameters:
        _fix_path(method, path, case.path_parameters, rng)
    if case.query:
        _fix_query(case.query, rng)
    if case.body is not NOT_SET and isinstance(case.body, dict | list):
        case.body = _fix_body(method, path, case.body, rng)
        if contains_binary(case.body):
            # Schemathesis re-validates a body a hook changed, but cannot validate one with
            # file parts (it then takes the request for an invalid one). The values set
            # above are valid; take them as the case's own.
            case._record_starting_state()
    return case


# -- one false positive of schemathesis 4.32.5 ------------------------------------------------


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure except "schema-violating request accepted" for a multipart body
    that is valid as sent.

    A multipart field carries text: a title generated as ``true`` or ``5`` (a type
    mutation) arrives as the valid string "true" or "5". Schemathesis knows this and
    re-validates the form as sent, but gives up (and reports the failure) when the form
    also has a file part, whose bytes its validator cannot take. Here the form as sent is
    validated with each file part read as a string; only a failure whose sole violation is
    in such a body, and whose body is valid that way, is dropped (and counted as dropped
    in the summary).
    """
    if isinstance(failure, RejectedPositiveData) and _tryon_refusal(case, response):
        reason = response.json().get("detail", "")[:80]
        print(f"contract_hooks: dropped ST202 of POST /v1/tryon: {reason}")
        return False
    if not isinstance(failure, AcceptedNegativeData):
        return True
    meta = case.meta
    negative = {location for location, info in meta.components.items() if info.mode.is_negative}
    if negative != {ParameterLocation.BODY} or not (case.media_type or "").startswith(
        "multipart/form-data"
    ):
        return True
    if not _form_valid_as_sent(case, response):
        return True
    print(f"contract_hooks: dropped ST201 of {case.operation.label}: form valid as sent")
    return False


def _tryon_refusal(case: Any, response: Any) -> bool:
    """A try-on refused for what the photos show (no face; a product photo to cut nothing
    out of; not a kind that can be tried on): a 422 by design, which no schema can say."""
    if case.operation.path != "/v1/tryon" or response.status_code != 422:
        return False
    with contextlib.suppress(ValueError):
        kind = str(response.json().get("type", ""))
        return kind.rsplit("/", 1)[-1] in {"no-face", "not-tryable", "no-product-cut-out"}
    return False


def _form_valid_as_sent(case: Any, response: Any) -> bool:
    try:
        request = response.request
        content = request.body if isinstance(request.body, bytes) else str(request.body).encode()
        header = f"Content-Type: {request.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(header + content)
        body = case.operation.get_body_for_media_type(case.media_type)
        kind = case.operation.schema.adapter.jsonschema_validator_cls
        sent: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            schema = body.form_properties.get(name) or {}
            is_array = schema.get("type") == "array"
            if part.get_filename() is not None:
                value: Any = ""  # a file: its bytes are not what is judged here
            else:
                text = (part.get_payload(decode=True) or b"").decode(errors="replace")
                readings: list[Any] = [text]
                with contextlib.suppress(ValueError):  # numbers, booleans: parsed from text
                    readings.append(json.loads(text))
                fits = make_validator(schema.get("items", {}) if is_array else schema, kind)
                value = next((r for r in readings if fits.is_valid(r)), text)
            if is_array:
                sent.setdefault(name, []).append(value)
            else:
                sent[name] = value
        return bool(make_validator(body.optimized_schema, kind).is_valid(sent))
    except Exception:  # a body or schema this cannot read: keep the failure
        return False
