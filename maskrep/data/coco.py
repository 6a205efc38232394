"""Reading COCO-format instance annotations.

The one module that knows COCO's layout: xywh boxes, sparse category ids, polygon lists and RLE
dicts (compressed or not). It yields :class:`CocoInstance` records with xyxy boxes, contiguous labels
and masks in maskrep's conventions.

Bad input raises :class:`AnnotationError` naming the file, the annotation id and the value; with
``on_error="skip"`` such annotations are counted per reason instead, and reported when iteration
ends. Crowd regions and instances under ``min_area`` are filtered out and counted in ``skipped``:
nothing is dropped silently.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..ops.polygons import polygons_to_mask
from ..ops.rle import decode_counts, rle_area, rle_to_mask
from ..structures import InstanceMasks

__all__ = ["AnnotationError", "CocoInstance", "CocoInstances", "crop_instances"]

#: How far (pixels) a box may stick out of its image before it counts as outside (COCO rounding).
BOX_TOLERANCE = 1.0


class AnnotationError(ValueError):
    """A COCO annotation file holds something maskrep cannot use; the message names where."""

    def __init__(self, message: str, *, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CocoInstance:
    """One annotated instance.

    ``box`` is (4,) float64 xyxy in image pixels; ``label`` the contiguous class index; exactly one
    of ``polygons`` (tuple of (P, 2) float64 (x, y) arrays) and ``rle`` is set.
    """

    ann_id: int
    image_id: int
    file_name: str
    height: int
    width: int
    category_id: int
    label: int
    box: np.ndarray
    area: float
    iscrowd: bool
    polygons: tuple | None = None
    rle: dict | None = field(default=None, repr=False)

    def mask(self) -> np.ndarray:
        """The full-image mask, (H, W) bool."""
        if self.polygons is not None:
            return polygons_to_mask(self.polygons, self.height, self.width)
        return rle_to_mask(self.rle)

    def to_rle(self) -> dict:
        """The full-image mask as a compressed COCO RLE (``{"size": [H, W], "counts": str}``), made
        without the dense mask: byte for byte pycocotools' ``merge(frPyObjects(...))``."""
        if self.polygons is not None:
            from ..ops.rle import polygons_to_rle

            return polygons_to_rle([self.polygons], self.height, self.width)[0]
        counts = self.rle["counts"]
        if isinstance(counts, (str, bytes)):
            return {"size": [self.height, self.width], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
        from ..ops.rle import encode_counts

        return {"size": [self.height, self.width], "counts": encode_counts(counts)}


class CocoInstances:
    """The instances of a COCO JSON file, streamed one record at a time.

    Parameters
    ----------
    annotations : str or os.PathLike
        The instances JSON.
    image_dir : str or os.PathLike, optional
        Folder holding the images; when given, each image with instances must exist there.
    skip_crowd : bool
        Leave out ``iscrowd=1`` regions (counted in ``skipped["crowd"]``).
    min_area : float
        Leave out instances whose ``area`` is below this (counted in ``skipped["min_area"]``).
    on_error : {"raise", "skip"}
        What to do with a bad annotation: raise :class:`AnnotationError`, or count and skip it.

    Examples
    --------
    >>> data = CocoInstances("instances_val2017.json")  # doctest: +SKIP
    >>> inst = next(iter(data)); inst.box.shape, inst.mask().shape  # doctest: +SKIP
    ((4,), (426, 640))
    """

    def __init__(
        self,
        annotations: str | os.PathLike,
        *,
        image_dir: str | os.PathLike | None = None,
        skip_crowd: bool = True,
        min_area: float = 0.0,
        on_error: str = "raise",
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.path = os.fspath(annotations)
        self.image_dir = os.fspath(image_dir) if image_dir is not None else None
        self.skip_crowd = skip_crowd
        self.min_area = float(min_area)
        self.on_error = on_error
        self.skipped: Counter = Counter()
        self._load_skipped: Counter = Counter()  # images and categories left out when reading the file
        self._checked_images: set = set()
        self._left_out_images: dict = {}  # image id -> the reason it was left out when reading the file
        try:
            with open(self.path, encoding="utf-8") as f:
                raw = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"annotation file not found: {self.path}") from None
        except json.JSONDecodeError as e:
            raise AnnotationError(f"{self.path}: not valid JSON ({e})", reason="json") from None
        except UnicodeDecodeError:
            raise AnnotationError(f"{self.path}: not a JSON text file (it holds bytes that are not UTF-8)",
                                  reason="json") from None
        if not isinstance(raw, dict):
            raise AnnotationError(f"{self.path}: the top level must be an object with images, annotations and "
                                  f"categories, got {type(raw).__name__}", reason="format")
        for key in ("images", "annotations", "categories"):
            if key not in raw:
                raise AnnotationError(f"{self.path}: missing top-level key {key!r}", reason="format")
            if not isinstance(raw[key], list):
                raise AnnotationError(f"{self.path}: {key!r} must be a list, got {type(raw[key]).__name__}",
                                      reason="format")
        self.categories = self._records(raw["categories"], "category", ("id", "name"))
        self.categories.sort(key=lambda c: c["id"])
        #: COCO category id -> contiguous label 0..K-1, in increasing id order.
        self.label_of = {c["id"]: i for i, c in enumerate(self.categories)}
        self.class_names = [str(c["name"]) for c in self.categories]
        self.images = {im["id"]: im for im in self._records(raw["images"], "image", ("id", "height", "width"))}
        self._annotations = raw["annotations"]

    def _records(self, records: list, kind: str, required: tuple) -> list[dict]:
        """The file's images or categories, each with the keys it needs (positive integer sizes within
        ``_config.MAX_IMAGE_PIXELS`` for images); a bad one raises, or is counted and left out."""
        good, seen = [], set()
        for k, rec in enumerate(records):
            try:
                if not isinstance(rec, dict):
                    raise AnnotationError(f"{self.path}: {kind} {k} must be an object, got {type(rec).__name__}",
                                          reason=f"malformed_{kind}")
                missing = [key for key in required if key not in rec]
                if missing:
                    raise AnnotationError(f"{self.path}: {kind} {rec.get('id', f'#{k}')} has no {missing[0]!r}",
                                          reason=f"malformed_{kind}")
                if rec["id"] in seen:
                    raise AnnotationError(f"{self.path}: {kind} id {rec['id']!r} appears twice", reason=f"duplicate_{kind}")
                if kind == "image":
                    self._check_image_size(rec)
                seen.add(rec["id"])
                good.append(rec)
            except AnnotationError as e:
                if self.on_error == "raise":
                    raise
                self._load_skipped[e.reason] += 1
                self.skipped[e.reason] += 1
                if kind == "image" and isinstance(rec, dict) and "id" in rec:
                    self._left_out_images[rec["id"]] = e.reason
        return good

    def _check_image_size(self, image: dict) -> None:
        from .. import _config

        h, w = image["height"], image["width"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
            raise AnnotationError(f"{self.path}: image {image['id']} has height {h!r} and width {w!r}; both must be "
                                  "positive integers", reason="malformed_image")
        if h * w > _config.MAX_IMAGE_PIXELS:
            raise AnnotationError(f"{self.path}: image {image['id']} is {w} x {h} = {h * w:,} pixels, over the "
                                  f"{_config.MAX_IMAGE_PIXELS:,} one image may have (maskrep._config.MAX_IMAGE_PIXELS)",
                                  reason="image_too_large")

    def __len__(self) -> int:
        """Number of annotation records in the file (before any filter)."""
        return len(self._annotations)

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    def image_path(self, image_id: int) -> str:
        if self.image_dir is None:
            raise ValueError("CocoInstances was built without image_dir")
        return os.path.join(self.image_dir, self.images[image_id]["file_name"])

    # ---- iteration -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[CocoInstance]:
        self.skipped = Counter(self._load_skipped)
        errors = Counter(self._load_skipped)
        seen_ids: set = set()
        for ann in self._annotations:
            try:
                if not isinstance(ann, dict):
                    raise AnnotationError(f"{self.path}: an annotation must be an object, got {type(ann).__name__}",
                                          reason="malformed_annotation")
                if "id" not in ann:
                    self._fail(ann, "the annotation has no 'id'", "malformed_annotation")
                if isinstance(ann["id"], bool) or not isinstance(ann["id"], int):
                    self._fail(ann, f"annotation id must be an integer, got {ann['id']!r}", "malformed_annotation")
                if ann["id"] in seen_ids:
                    self._fail(ann, f"annotation id {ann['id']!r} appears twice", "duplicate_id")
                seen_ids.add(ann["id"])
                inst = self._parse(ann)
            except AnnotationError as e:
                if self.on_error == "raise":
                    raise
                errors[e.reason] += 1
                self.skipped[e.reason] += 1
                continue
            if inst.iscrowd and self.skip_crowd:
                self.skipped["crowd"] += 1
                continue
            if inst.area < self.min_area:
                self.skipped["min_area"] += 1
                continue
            yield inst
        if errors:
            warnings.warn(f"{self.path}: skipped bad annotations: {self._format(errors)}", stacklevel=2)

    def by_image(self) -> Iterator[tuple[dict, list[CocoInstance]]]:
        """Yield (image record, its instances) for every image in the file, in file order."""
        per_image: dict = {image_id: [] for image_id in self.images}
        for inst in self:
            per_image[inst.image_id].append(inst)
        for image_id, insts in per_image.items():
            yield self.images[image_id], insts

    def summary(self) -> str:
        """One line: what the last iteration skipped, by reason."""
        return f"skipped: {self._format(self.skipped)}" if self.skipped else "skipped: none"

    @staticmethod
    def _format(counts: Counter) -> str:
        return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))

    # ---- validation ----------------------------------------------------------------------------

    def _fail(self, ann: dict, problem: str, reason: str):
        where = f"{self.path}: annotation {ann.get('id', '?')} (image {ann.get('image_id', '?')})"
        raise AnnotationError(f"{where}: {problem}", reason=reason)

    def _parse(self, ann: dict) -> CocoInstance:
        image = self.images.get(ann.get("image_id"))
        if image is None:
            left_out = self._left_out_images.get(ann.get("image_id"))
            if left_out is not None:  # counted under the reason its image was left out
                self._fail(ann, f"its image {ann.get('image_id')!r} was left out ({left_out})", left_out)
            self._fail(ann, f"image_id {ann.get('image_id')!r} is not among the file's images", "unknown_image")
        label = self.label_of.get(ann.get("category_id"))
        if label is None:
            self._fail(ann, f"category_id {ann.get('category_id')!r} is not among the file's categories", "unknown_category")
        h, w = int(image["height"]), int(image["width"])
        if self.image_dir is not None and image["id"] not in self._checked_images:
            path = os.path.join(self.image_dir, image["file_name"])
            if not os.path.isfile(path):
                self._fail(ann, f"image file {path} does not exist", "missing_image")
            self._checked_images.add(image["id"])
        box = self._parse_box(ann, h, w)
        iscrowd = bool(ann.get("iscrowd", 0))
        seg = ann.get("segmentation")
        polygons, rle = None, None
        if isinstance(seg, list):
            polygons = self._parse_polygons(ann, seg)
            area = ann.get("area")
        elif isinstance(seg, dict):
            rle = self._parse_rle(ann, seg, h, w)
            area = ann.get("area")
            if area is None:
                area = rle_area(rle)
        else:
            self._fail(ann, f"segmentation must be a polygon list or an RLE dict, got {type(seg).__name__}", "malformed_segmentation")
        if area is None:
            area = (box[2] - box[0]) * (box[3] - box[1])
        return CocoInstance(
            ann_id=int(ann["id"]),
            image_id=int(image["id"]),
            file_name=image["file_name"],
            height=h,
            width=w,
            category_id=int(ann["category_id"]),
            label=label,
            box=box,
            area=float(area),
            iscrowd=iscrowd,
            polygons=polygons,
            rle=rle,
        )

    def _parse_box(self, ann: dict, h: int, w: int) -> np.ndarray:
        bbox = ann.get("bbox")
        try:
            x, y, bw, bh = (float(v) for v in bbox)
        except (TypeError, ValueError):
            self._fail(ann, f"bbox must be 4 numbers [x, y, w, h], got {bbox!r}", "malformed_box")
        if not all(math.isfinite(v) for v in (x, y, bw, bh)) or bw < 0 or bh < 0:
            self._fail(ann, f"bbox {bbox!r} has a negative or non-finite value", "malformed_box")
        if bw == 0 or bh == 0:
            self._fail(ann, f"bbox {bbox!r} has zero width or height: there is nothing to crop", "empty_box")
        t = BOX_TOLERANCE
        if x < -t or y < -t or x + bw > w + t or y + bh > h + t:
            self._fail(ann, f"box xywh {bbox!r} lies outside the {w}x{h} image", "box_outside_image")
        return np.array([x, y, x + bw, y + bh], dtype=np.float64)

    def _parse_polygons(self, ann: dict, seg: list) -> tuple:
        if not seg:
            self._fail(ann, "segmentation is an empty polygon list", "malformed_polygon")
        polygons = []
        for k, poly in enumerate(seg):
            if not isinstance(poly, (list, tuple)):
                self._fail(ann, f"polygon {k} must be a flat list of numbers, got {type(poly).__name__}", "malformed_polygon")
            try:
                arr = np.asarray(poly, dtype=np.float64)
            except (TypeError, ValueError):
                self._fail(ann, f"polygon {k} holds a value that is not a number: {poly[:8]!r}...", "malformed_polygon")
            if arr.ndim != 1 or not np.isfinite(arr).all():
                self._fail(ann, f"polygon {k} must be a flat list of finite numbers", "malformed_polygon")
            if arr.size < 6:
                self._fail(ann, f"polygon {k} has {arr.size} numbers; a polygon needs at least 6 (3 points)", "short_polygon")
            if arr.size % 2:
                self._fail(ann, f"polygon {k} has an odd count of numbers ({arr.size})", "malformed_polygon")
            polygons.append(arr.reshape(-1, 2))
        return tuple(polygons)

    def _parse_rle(self, ann: dict, seg: dict, h: int, w: int) -> dict:
        size, counts = seg.get("size"), seg.get("counts")
        if size is None or counts is None:
            self._fail(ann, "an RLE segmentation needs 'size' and 'counts'", "malformed_rle")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                  for v in size)):
            self._fail(ann, f"RLE size must be two integers [H, W], got {size!r}", "malformed_rle")
        if list(size) != [h, w]:
            self._fail(ann, f"RLE size {list(size)} differs from the image size [{h}, {w}]", "malformed_rle")
        if isinstance(counts, list):
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
                bad = next(v for v in counts if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0))
                self._fail(ann, f"uncompressed RLE counts must be non-negative integers, got {bad!r}", "malformed_rle")
            total = sum(counts)
        elif isinstance(counts, str):
            try:
                runs = decode_counts(counts)
            except ValueError as e:  # a negative run, a character outside the alphabet, a cut string
                self._fail(ann, str(e), "malformed_rle")
            total = int(runs.sum())
        else:
            self._fail(ann, f"RLE counts must be a string or a list, got {type(counts).__name__}", "malformed_rle")
        if total != h * w:
            self._fail(ann, f"RLE counts add up to {total}, expected H * W = {h * w}", "malformed_rle")
        return {"size": [h, w], "counts": counts}


def crop_instances(instances: Sequence[CocoInstance], size: int, *, boxes=None, rule: str = "coco") -> np.ndarray:
    """Each instance's mask cropped to a box and resampled to (size, size): the codec target.

    Polygon instances are rasterised into the box, RLE ones cropped from their bitmap
    (:meth:`maskrep.structures.InstanceMasks.crop_in_boxes`, where every ground-truth crop is made).

    Parameters
    ----------
    instances : sequence of length N of CocoInstance
    size : int
    boxes : (N, 4) xyxy, optional
        Boxes to crop to; by default each instance's own box.
    rule : {"coco", "center"}
        The polygon rule (:mod:`maskrep.ops.polygons`); "coco" gives detectron2's crops exactly.

    Returns
    -------
    ndarray of shape (N, S, S), bool
    """
    if not len(instances):
        return np.zeros((0, size, size), dtype=bool)
    boxes = np.stack([inst.box for inst in instances]) if boxes is None else np.asarray(boxes, np.float64)
    return InstanceMasks.from_instances(instances).crop_in_boxes(boxes, size, rule=rule)
