import json
from pathlib import Path

import numpy as np
import pytest

from maskrep.data import AnnotationError, CocoInstances, crop_instances

IMAGE = {"id": 7, "file_name": "a.jpg", "height": 20, "width": 30}
CATS = [{"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}]


def _ann(**kw):
    ann = {"id": 42, "image_id": 7, "category_id": 3, "bbox": [2, 3, 10, 8], "area": 50.0, "iscrowd": 0,
           "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]]}
    ann.update(kw)
    return ann


def _write(tmp_path, anns, images=(IMAGE,)):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": list(images), "annotations": anns, "categories": CATS}))
    return path


def test_reads_polygon_and_rle(tmp_path):
    from maskrep.ops import mask_to_rle

    m = np.zeros((20, 30), bool)
    m[5:9, 10:20] = True
    anns = [_ann(), _ann(id=43, category_id=1, segmentation=mask_to_rle(m), bbox=[10, 5, 10, 4], area=40)]
    data = CocoInstances(_write(tmp_path, anns))
    a, b = list(data)
    assert a.label == 1 and b.label == 0  # contiguous labels follow increasing category id
    assert a.box.tolist() == [2, 3, 12, 11]
    assert a.mask().sum() == 80 and (b.mask() == m).all()
    crops = crop_instances([a, b], 4)
    assert crops.shape == (2, 4, 4) and crops.all()


@pytest.mark.parametrize(
    "ann, message",
    [
        (_ann(segmentation=[[2, 3, 12, 3]]), "annotation 42 \\(image 7\\): polygon 0 has 4 numbers; a polygon needs at least 6"),
        (_ann(segmentation=[[2, 3, 12, 3, 12, "x", 1]]), "annotation 42 \\(image 7\\): polygon 0 holds a value that is not a number"),
        (_ann(segmentation=[[2, 3, 12, 3, 12, 11, 5]]), "annotation 42 \\(image 7\\): polygon 0 has an odd count of numbers \\(7\\)"),
        (_ann(bbox=[25, 3, 10, 8]), "annotation 42 \\(image 7\\): box xywh \\[25, 3, 10, 8\\] lies outside the 30x20 image"),
        (_ann(bbox=[2, 3, -1, 8]), "annotation 42 \\(image 7\\): bbox \\[2, 3, -1, 8\\] has a negative"),
        (_ann(category_id=99), "annotation 42 \\(image 7\\): category_id 99 is not among"),
        (_ann(image_id=8), "annotation 42 \\(image 8\\): image_id 8 is not among"),
        (_ann(segmentation={"size": [20, 30], "counts": [5, 5]}), "RLE counts add up to 10, expected H \\* W = 600"),
        (_ann(segmentation={"size": [10, 30], "counts": "abc"}), "RLE size \\[10, 30\\] differs from the image size"),
    ],
)
def test_bad_input_names_file_and_annotation(tmp_path, ann, message):
    path = _write(tmp_path, [ann])
    with pytest.raises(AnnotationError, match=message) as info:
        list(CocoInstances(path))
    assert str(info.value).startswith(str(path))


def test_missing_image_on_disk(tmp_path):
    path = _write(tmp_path, [_ann()])
    with pytest.raises(AnnotationError, match=f"image file {tmp_path}/a.jpg does not exist"):
        list(CocoInstances(path, image_dir=tmp_path))
    (tmp_path / "a.jpg").write_bytes(b"")
    assert len(list(CocoInstances(path, image_dir=tmp_path))) == 1


def test_skip_mode_counts_and_reports(tmp_path):
    anns = [_ann(), _ann(id=2, segmentation=[[1, 2, 3, 4]]), _ann(id=3, bbox=[0, 0, 90, 9]),
            _ann(id=4, iscrowd=1), _ann(id=5, area=3.0)]
    data = CocoInstances(_write(tmp_path, anns), on_error="skip", min_area=10)
    with pytest.warns(UserWarning, match="skipped bad annotations: box_outside_image 1, short_polygon 1"):
        kept = list(data)
    assert [i.ann_id for i in kept] == [42]
    assert data.skipped == {"short_polygon": 1, "box_outside_image": 1, "crowd": 1, "min_area": 1}
    assert data.summary() == "skipped: box_outside_image 1, crowd 1, min_area 1, short_polygon 1"


def test_file_level_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file not found: .*nope.json"):
        CocoInstances(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(AnnotationError, match="bad.json: not valid JSON"):
        CocoInstances(bad)
    bad.write_text("{}")
    with pytest.raises(AnnotationError, match="missing top-level key 'images'"):
        CocoInstances(bad)


def test_synthetic_reads_like_coco(synthetic):
    from maskrep.ops import masks_to_boxes

    path, image_dir = synthetic["train"]
    data = CocoInstances(path, image_dir=image_dir, skip_crowd=False)
    insts = list(data)
    kinds = {(i.polygons is None, i.iscrowd) for i in insts}
    assert kinds == {(False, False), (True, False), (True, True)}  # polygons, RLE, crowd RLE
    assert data.num_classes == 6 and sorted({i.label for i in insts}) == list(range(6))
    for inst in insts:
        m = inst.mask()
        assert abs(int(m.sum()) - inst.area) <= 3  # polygons are stored to 2 decimals
        box = masks_to_boxes(m[None])[0]
        if inst.polygons is None:  # RLE boxes are the mask's tight box
            np.testing.assert_allclose(box, inst.box)
        else:  # a polygon's extent holds its pixels (a sharp vertex may cover no pixel centre)
            assert np.all(box[:2] >= np.floor(inst.box[:2])) and np.all(box[2:] <= np.ceil(inst.box[2:]))


def test_synthetic_is_seeded(tmp_path):
    from maskrep.data.synthetic import make_synthetic_coco

    a = make_synthetic_coco(tmp_path / "a", num_images=3, seed=5)
    b = make_synthetic_coco(tmp_path / "b", num_images=3, seed=5)
    assert Path(a).read_text() == Path(b).read_text()
    assert (tmp_path / "a" / "train" / "000000000001.jpg").read_bytes() == (tmp_path / "b" / "train" / "000000000001.jpg").read_bytes()
