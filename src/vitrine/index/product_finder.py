"""Where the products are in a shopper's photo: the trained localiser, served.

:class:`ProductFinder` loads the newest localiser that the ``train_localizer`` job wrote
(``model_dir/localizer/<version>.npz`` beside its ``.json`` record), follows newer ones
as they appear (the folder is listed again only when it changed), and answers the
products' boxes in a photo's own pixels. Search by photo asks ``plain_background`` on a
small copy first: a catalog-like photo is searched whole; on a busy one ``isolate``
answers the best box, when the localiser is confident, as the query.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.vision.decode import DEFAULT_MIN_SIDE
from vitrine.vision.feature_map import FeatureMapper, letterbox
from vitrine.vision.foreground import estimate_foreground
from vitrine.vision.localize import Localizer

# A margin around a box, as a share of its side: the CNN sees the product's outline.
CROP_MARGIN = 0.06
# A snapshot's best box becomes the query when it scores this much and leaves this much
# of the photo out (otherwise the whole photo is the product).
ISOLATE_MIN_SCORE = 0.45
ISOLATE_MAX_AREA = 0.8
MIN_BOX_SIDE = DEFAULT_MIN_SIDE + 2  # the crop may lose a pixel to rounding
PLAIN_CHECK_SIDE = 160  # the copy on which a photo's background is judged


@dataclass(frozen=True)
class FoundProduct:
    """A product's box ``[x0, y0, x1, y1]`` in the photo's pixels and the localiser's
    score (its predicted overlap with a product, 0..1)."""

    box: tuple[int, int, int, int]
    score: float


def localizer_dir(model_dir: Path) -> Path:
    return Path(model_dir) / "localizer"


def list_localizers(model_dir: Path) -> list[dict[str, Any]]:
    """The localisers' records, newest first."""
    folder = localizer_dir(model_dir)
    records = []
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if (folder / f"{record.get('version')}.npz").is_file():
            records.append(record)
    return sorted(records, key=lambda r: str(r.get("trained_at")), reverse=True)


def crop(image: np.ndarray, box: tuple[int, int, int, int], margin: float = CROP_MARGIN):
    """``image`` inside ``box`` widened by ``margin`` of its sides (clipped to the photo)."""
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    h, w = image.shape[:2]
    top, bottom = int(max(0, y0 - my)), int(min(h, y1 + my))
    left, right = int(max(0, x0 - mx)), int(min(w, x1 + mx))
    return np.ascontiguousarray(image[top:bottom, left:right])


class ProductFinder:
    """Finds products in photos with the newest trained localiser (none: finds nothing)."""

    def __init__(self, model_dir: Path, mapper: FeatureMapper | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.mapper = mapper or FeatureMapper(self.model_dir)
        self._loaded: tuple[str, Localizer] | None = None
        # (the folder's file names, the newest record): versions are new files
        self._newest: tuple[tuple[str, ...], dict[str, Any] | None] | None = None
        self._lock = threading.Lock()

    def record(self) -> dict[str, Any] | None:
        """The newest localiser's record (None: none trained yet). The records are read
        again only when the folder's files changed (a new version written by any
        process): this runs on every search by photo."""
        try:
            stamp = tuple(sorted(os.listdir(localizer_dir(self.model_dir))))
        except FileNotFoundError:
            return None
        newest = self._newest
        if newest is None or newest[0] != stamp:
            records = list_localizers(self.model_dir)
            newest = self._newest = (stamp, records[0] if records else None)
        return newest[1]

    def localizer(self) -> Localizer | None:
        record = self.record()
        if record is None:
            return None
        with self._lock:
            if self._loaded is None or self._loaded[0] != record["version"]:
                path = localizer_dir(self.model_dir) / f"{record['version']}.npz"
                self._loaded = (record["version"], Localizer.load(path))
            return self._loaded[1]

    @property
    def available(self) -> bool:
        return self.record() is not None

    def find(self, image: np.ndarray, min_score: float | None = None) -> list[FoundProduct]:
        """The products in an RGB photo, best first (no localiser: an empty list)."""
        localizer = self.localizer()
        if localizer is None:
            return []
        model_input, placement = letterbox(image)
        detections = localizer.predict(self.mapper(model_input[None])[0], min_score)
        found = []
        for detection in detections:
            x0, y0, x1, y1 = placement.to_photo(np.asarray(detection.box)).round().astype(int)
            # A box smaller than the smallest photo Vitrine reads is no product to search.
            if x1 - x0 >= MIN_BOX_SIDE and y1 - y0 >= MIN_BOX_SIDE:
                found.append(FoundProduct((int(x0), int(y0), int(x1), int(y1)), detection.score))
        return found

    @staticmethod
    def plain_background(small: np.ndarray) -> bool:
        """Whether a (small, <= ``PLAIN_CHECK_SIDE``) copy of a photo shows a product on a
        plain background: a catalog-like photo, searched whole."""
        return estimate_foreground(small).background_uniform

    def isolate(self, image: np.ndarray) -> np.ndarray | None:
        """The product of a snapshot (a photo whose background is not plain), cropped;
        None when it is best searched whole (no localiser, no confident box, or a box
        that is most of the photo)."""
        found = self.find(image, ISOLATE_MIN_SCORE)
        if not found:
            return None
        x0, y0, x1, y1 = found[0].box
        if (x1 - x0) * (y1 - y0) > ISOLATE_MAX_AREA * image.shape[0] * image.shape[1]:
            return None
        return crop(image, found[0].box)
