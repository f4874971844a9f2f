"""Virtual try-on: a product's cut-out placed on a person's photo by the face.

Three kinds of product, each placed from the largest face (:mod:`vitrine.vision.faces`),
in the face's own tilted frame (sizes in face widths; the cascade's face box spans the
brows to the mouth):

* eyewear: as wide as the face, centred on the eye line (0.1 face above the centre);
* headwear: 1.3 faces wide, its lower edge on the eyebrows (0.3 above the centre), so
  that it sits on the head above them;
* tops: 3 faces wide (shoulder to shoulder), its upper edge under the chin.

The product comes from its studio photo: cut out along its outline
(:func:`vitrine.vision.scenes.cut_out`), so that only the product is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from vitrine.vision.faces import Face
from vitrine.vision.scenes import CutOut

Kind = Literal["eyewear", "headwear", "top"]


@dataclass(frozen=True)
class Placement:
    """Where a kind of product goes: its width in face sizes, and the face-frame point
    (in face sizes from the face's centre) that its anchor lands on; ``anchor`` is the
    product's own point there: ``"centre"``, ``"bottom"`` or ``"top"`` (centre of that
    edge)."""

    width: float
    along: float
    down: float
    anchor: Literal["centre", "bottom", "top"]


PLACEMENTS: dict[str, Placement] = {
    "eyewear": Placement(1.0, 0.0, -0.1, "centre"),
    "headwear": Placement(1.3, 0.0, -0.3, "bottom"),
    "top": Placement(3.0, 0.0, 0.75, "top"),
}


@dataclass(frozen=True)
class TryOn:
    """The photo with the product on, and where it went (its box in the photo)."""

    image: np.ndarray
    box: tuple[int, int, int, int]


def place(person: np.ndarray, product: CutOut, face: Face, kind: Kind) -> TryOn:
    """Draw ``product`` on ``person`` (RGB) by ``face`` as a ``kind`` is worn."""
    rule = PLACEMENTS[kind]
    h0, w0 = product.rgb.shape[:2]
    scale = rule.width * face.size / w0
    anchor_y = {"centre": h0 / 2, "bottom": float(h0), "top": 0.0}[rule.anchor]
    target = face.point(rule.along, rule.down)
    # product pixel -> photo pixel: scale about the anchor, rotate by the face's tilt
    # (counter-clockwise as seen), move the anchor onto the target.
    angle = math.radians(face.tilt)
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    ax, ay = w0 / 2, anchor_y
    matrix = np.array(
        [[cos, sin, target[0] - cos * ax - sin * ay],
         [-sin, cos, target[1] + sin * ax - cos * ay]]
    )  # fmt: skip
    height, width = person.shape[:2]
    rgb = cv2.warpAffine(product.rgb, matrix, (width, height), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(product.alpha, matrix, (width, height), flags=cv2.INTER_LINEAR)
    alpha = alpha[..., None]
    out = (alpha * rgb + (1 - alpha) * person).clip(0, 255).astype(np.uint8)
    ys, xs = np.nonzero(alpha[..., 0] > 0.5)
    if not len(xs):
        return TryOn(out, (0, 0, 0, 0))
    return TryOn(out, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
