"""Golden numbers on coco-mini val2017 (1,672 non-crowd instances)."""

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from maskrep.data import crop_instances
from maskrep.ops import mask_iou, paste_masks, rasterize_in_boxes

pytestmark = pytest.mark.realdata

#: Recorded with `maskrep` at this commit: crop each val instance to its box at 56 x 56 (polygon
#: raster, pycocotools' rule), paste back bilinearly, threshold 0.5, IoU against the full-image mask.
CROP_PASTE_56_GOLDEN = 0.97502


def _pycocotools_crop(polygons, box, size):
    """detectron2's ``rasterize_polygons_within_box``: shift, scale by S / max(side, 0.1) in the
    box's dtype, then pycocotools frPyObjects -> merge -> decode."""
    side = np.maximum(box[2:] - box[:2], box.dtype.type(0.1))
    scale = box.dtype.type(size) / side
    mapped = [((p - box[:2].astype(np.float64)) * scale.astype(np.float64)).ravel().tolist() for p in polygons]
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(mapped, size, size))).astype(bool)


def _polygon_instances(coco_mini):
    from maskrep.data import CocoInstances

    insts = []
    for split in ("train", "val"):
        data = CocoInstances(coco_mini / "annotations" / f"instances_{split}2017.json")
        insts += [i for i in data if i.polygons is not None]
    return insts


def test_instance_count(coco_val):
    data, insts = coco_val
    assert len(insts) == 1672 and data.skipped == {"crowd": 20} and data.num_classes == 80


@pytest.mark.parametrize("size", [14, 28, 56])
def test_crops_equal_pycocotools_on_every_polygon_instance(coco_mini, size):
    """Train and val, every non-crowd polygon instance: identical crops, float64 and float32 boxes."""
    insts = _polygon_instances(coco_mini)
    polys = [i.polygons for i in insts]
    boxes = np.stack([i.box for i in insts])
    assert len(insts) == 3241
    for dtype in (np.float64, np.float32):
        b = boxes.astype(dtype)
        expected = np.stack([_pycocotools_crop(p, box, size) for p, box in zip(polys, b)])
        for backend in ("reference", "numba"):
            got = rasterize_in_boxes(polys, b, size, backend=backend)
            assert np.array_equal(got, expected), (dtype, backend, np.flatnonzero((got != expected).any((1, 2)))[:5])
    # the centre rule differs from pycocotools on a few pixels of most crops
    assert mask_iou(rasterize_in_boxes(polys, boxes, size, rule="center"), expected).mean() >= 0.97


def test_issue_example_annotation_141747():
    poly = [np.array([636.93, 220.98, 556.17, 213.47, 566.5, 172.16, 640.0, 169.81]).reshape(-1, 2)]
    box = np.array([556.17, 169.81, 640.0, 220.98])
    expected = _pycocotools_crop(poly, box, 28)
    got = rasterize_in_boxes([poly], box[None], 28)[0]
    assert np.array_equal(got, expected) and not got[24, 4]
    # pixel-centre sampling of the exact polygon puts cell (24, 4) inside
    assert rasterize_in_boxes([poly], box[None], 28, rule="center")[0, 24, 4]


def test_full_masks_equal_pycocotools_on_every_polygon_instance(coco_mini):
    from maskrep.ops import polygons_to_masks

    for inst in _polygon_instances(coco_mini):
        flat = [p.ravel().tolist() for p in inst.polygons]
        ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(flat, inst.height, inst.width))).astype(bool)
        assert np.array_equal(inst.mask(), ref), inst.ann_id
        assert np.array_equal(polygons_to_masks([inst.polygons], inst.height, inst.width, backend="numba")[0], ref)


def test_crop_then_paste_golden(coco_val):
    _, insts = coco_val
    crops = crop_instances(insts, 56)
    ious = []
    for inst, crop in zip(insts, crops):
        pasted = paste_masks(crop[None].astype(np.float32), inst.box[None], (inst.height, inst.width))
        full = inst.mask()
        ious.append(mask_iou(pasted, full[None])[0])
        x0, y0, x1, y1 = inst.box
        rows, cols = np.mgrid[0 : inst.height, 0 : inst.width] + 0.5
        outside = (cols < x0) | (cols > x1) | (rows < y0) | (rows > y1)
        assert not pasted[0][outside].any()
    assert np.mean(ious) == pytest.approx(CROP_PASTE_56_GOLDEN, abs=5e-5)


def _by_image(insts):
    groups = {}
    for inst in insts:
        groups.setdefault(inst.image_id, []).append(inst)
    return list(groups.values())


def test_paste_to_rle_equals_pycocotools_encode_on_every_val_instance(coco_val):
    """Decoded-crop maps pasted straight to RLE: the bytes of pycocotools' encoding of the dense paste."""
    from maskrep.codecs import get_codec
    from maskrep.ops import paste_masks_to_rle

    _, insts = coco_val
    codec = get_codec("dct", mask_size=28, dim=40)  # soft maps with many threshold crossings
    for group in _by_image(insts):
        h, w = group[0].height, group[0].width
        maps = codec.paste_maps(codec.encode(crop_instances(group, 28)))
        boxes = np.stack([i.box for i in group])
        dense = paste_masks(maps, boxes, (h, w))
        expected = mask_utils.encode(np.asfortranarray(dense.transpose(1, 2, 0).astype(np.uint8)))
        got = paste_masks_to_rle(maps, boxes, (h, w))
        assert [r["counts"] for r in got] == [e["counts"].decode("ascii") for e in expected], group[0].image_id


def test_rle_iou_and_polygons_to_rle_equal_pycocotools_on_val(coco_mini):
    """Every val instance (crowd ones included) to RLE without a dense mask, and the pairwise IoU of
    each image's instances against each other as COCOeval computes it (crowd as crowd)."""
    from maskrep.data import CocoInstances
    from maskrep.ops import polygons_to_rle, rle_iou

    data = CocoInstances(coco_mini / "annotations" / "instances_val2017.json", skip_crowd=False)
    for group in _by_image(list(data)):
        h, w = group[0].height, group[0].width
        theirs = []
        for inst in group:
            if inst.polygons is not None:
                flat = [p.ravel().tolist() for p in inst.polygons]
                theirs.append(mask_utils.merge(mask_utils.frPyObjects(flat, h, w)))
                assert polygons_to_rle([inst.polygons], h, w)[0]["counts"] == theirs[-1]["counts"].decode("ascii")
            else:
                theirs.append(mask_utils.frPyObjects(inst.rle, h, w) if isinstance(inst.rle["counts"], list)
                              else inst.rle)
        ours = [inst.rle if inst.rle is not None else polygons_to_rle([inst.polygons], h, w)[0] for inst in group]
        crowd = [int(inst.iscrowd) for inst in group]
        assert np.array_equal(rle_iou(ours, ours, crowd), mask_utils.iou(theirs, theirs, crowd))


def test_reconstruction_full_image_iou_on_rle_equals_dense(coco_val):
    """`maskrep reconstruct`'s full-image IoU, computed on RLEs, equals pasting and comparing dense masks."""
    from maskrep.codecs import get_codec
    from maskrep.engine.reconstruction import _full_image_scores

    _, insts = coco_val
    insts = insts[::4]  # 418 instances of many image sizes
    codec = get_codec("dct", mask_size=28, dim=20)
    codes = codec.encode(crop_instances(insts, 28))
    maps = codec.paste_maps(codes)
    dense = [mask_iou(paste_masks(m[None], i.box[None], (i.height, i.width)), i.mask()[None])[0]
             for i, m in zip(insts, maps)]
    assert np.array_equal(_full_image_scores(codec, insts, codes, boundary=False)[0], np.asarray(dense))
