"""Virtual try-on on scikit-image's own photos: ``astronaut`` has a face, ``coffee`` has
none. Glasses must land over the eyes, a cap above the eyebrows, a top under the chin;
a tilted photo tilts the product with the face. Through the API: a JPEG back, 422 for a
photo without a face or a product that cannot be tried on, 404 for an unknown product.
Screenshots of the results go to test-artifacts/tryon/."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data as skdata

from vitrine.accounts.keys import KeyService
from vitrine.api.app import create_app
from vitrine.catalog.store import ImageRecord, ProductRecord
from vitrine.config import load_settings
from vitrine.vision.faces import find_faces
from vitrine.vision.scenes import cut_out
from vitrine.vision.tryon import place

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "tryon"
# The astronaut's eyes and eyebrows (scikit-image's 512x512 photo), read off the photo.
EYES_Y, LEFT_EYE_X, RIGHT_EYE_X, BROWS_Y = 113, 200, 245, 100


def _glasses() -> np.ndarray:
    """A studio photo of sunglasses: two dark lenses and a bridge on white."""
    image = np.full((120, 300, 3), 255, np.uint8)
    cv2.ellipse(image, (85, 60), (60, 38), 0, 0, 360, (20, 20, 30), -1)
    cv2.ellipse(image, (215, 60), (60, 38), 0, 0, 360, (20, 20, 30), -1)
    cv2.line(image, (140, 50), (160, 50), (20, 20, 30), 6)
    return image


def _cap() -> np.ndarray:
    image = np.full((200, 300, 3), 255, np.uint8)
    cv2.ellipse(image, (150, 170), (120, 130), 0, 180, 360, (200, 30, 30), -1)
    cv2.rectangle(image, (30, 160), (270, 185), (150, 20, 20), -1)
    return image


def _tshirt() -> np.ndarray:
    image = np.full((300, 300, 3), 255, np.uint8)
    body = np.array([[60, 40], [110, 25], [190, 25], [240, 40], [290, 110], [240, 130],
                     [230, 290], [70, 290], [60, 130], [10, 110]], np.int32)  # fmt: skip
    cv2.fillPoly(image, [body], (30, 120, 40))
    return image


def _save(name: str, rgb: np.ndarray) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(ARTIFACTS / f"{name}.jpg", quality=90)


def test_faces_are_found_with_their_tilt_and_none_in_coffee() -> None:
    astronaut = skdata.astronaut()
    face = find_faces(astronaut)[0]
    assert 195 < face.x < 255 and 95 < face.y < 140 and 70 < face.size < 130
    assert abs(face.tilt) < 8
    assert find_faces(skdata.coffee()) == []
    turned = cv2.warpAffine(
        astronaut, cv2.getRotationMatrix2D((256, 256), 20, 1.0), (512, 512),
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    tilted = find_faces(turned)[0]
    assert 10 <= tilted.tilt <= 30, tilted  # counter-clockwise, as the photo was turned


def test_glasses_over_the_eyes_cap_above_the_brows_top_under_the_chin() -> None:
    astronaut = skdata.astronaut()
    face = find_faces(astronaut)[0]
    glasses = cut_out(_glasses())
    assert glasses is not None
    worn = place(astronaut, glasses, face, "eyewear")
    x0, y0, x1, y1 = worn.box
    assert y0 < EYES_Y < y1 and x0 < LEFT_EYE_X and x1 > RIGHT_EYE_X
    assert worn.image[EYES_Y, LEFT_EYE_X].max() < 80  # a dark lens over the eye
    _save("astronaut-glasses", worn.image)

    cap = cut_out(_cap())
    assert cap is not None
    hat = place(astronaut, cap, face, "headwear")
    assert hat.box[3] <= BROWS_Y + 8 and hat.box[1] < face.y - face.size / 2
    assert hat.box[0] < LEFT_EYE_X < RIGHT_EYE_X < hat.box[2]
    _save("astronaut-cap", hat.image)

    shirt = cut_out(_tshirt())
    assert shirt is not None
    top = place(astronaut, shirt, face, "top")
    assert top.box[1] > face.y + face.size / 3 and top.box[2] - top.box[0] > 2 * face.size
    _save("astronaut-top", top.image)


def test_a_tilted_face_tilts_the_glasses() -> None:
    turned = cv2.warpAffine(
        skdata.astronaut(), cv2.getRotationMatrix2D((256, 256), 20, 1.0), (512, 512),
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    face = find_faces(turned)[0]
    glasses = cut_out(_glasses())
    assert glasses is not None
    worn = place(turned, glasses, face, "eyewear")
    dark = (worn.image.max(axis=2) < 60) & (turned.max(axis=2) >= 60)  # the drawn lenses
    ys, xs = np.nonzero(dark)
    slope = np.polyfit(xs, ys, 1)[0]
    assert slope < -0.15, slope  # the right lens higher than the left, as the eyes are
    _save("astronaut-tilted-glasses", worn.image)


def _jpeg(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    home = tmp_path_factory.mktemp("home")
    app = create_app(load_settings(env={}).with_overrides(home=home, api_rate_limit=0), warm=False)
    vitrine = app.state.runtime
    for pid, kind, photo in (("g1", "Sunglasses", _glasses()), ("w1", "Watches", _glasses())):
        data = _jpeg(photo)
        vitrine.blobs.put(f"tryon/{pid}.jpg", data)
        vitrine.store.save_product(
            ProductRecord(pid, f"{kind} {pid}", attributes={"articleType": kind}),
            [ImageRecord(pid, f"h{pid}", f"tryon/{pid}.jpg", "jpeg", 300, 120, len(data))],
            replace_images=True,
        )
    key = KeyService(vitrine.engine).create("t", "read")[1]
    yield TestClient(app), key


def _post(client: TestClient, key: str, photo: bytes, product_id: str) -> Any:
    return client.post(
        "/v1/tryon",
        files={"photo": ("me.jpg", photo, "image/jpeg")},
        data={"product_id": product_id},
        headers={"X-API-Key": key},
    )


def test_the_api_answers_a_jpeg_or_says_why_not(client: tuple[TestClient, str]) -> None:
    app, key = client
    r = _post(app, key, _jpeg(skdata.astronaut()), "g1")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    result = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert result.shape == (512, 512, 3) and result[EYES_Y, LEFT_EYE_X].max() < 90
    _save("api-astronaut-glasses", result)
    r = _post(app, key, _jpeg(skdata.coffee()), "g1")
    assert r.status_code == 422 and "no face" in r.json()["detail"]
    r = _post(app, key, _jpeg(skdata.astronaut()), "w1")
    assert r.status_code == 422
    assert "Watches" in r.json()["detail"] and "Sunglasses" in r.json()["detail"]
    r = _post(app, key, _jpeg(skdata.astronaut()), "nope")
    assert r.status_code == 404
    r = _post(app, key, b"not an image", "g1")
    assert r.status_code == 415
