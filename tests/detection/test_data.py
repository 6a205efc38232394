"""Detection data pipeline and COCO evaluation."""

import itertools

import numpy as np
import pytest
import torch

from maskrep.data.detection import DetectionDataset, TrainingBatches, _resized_shape, collate
from maskrep.detection.heads import MaskMaps
from maskrep.engine.evaluation import coco_eval, detections_to_coco


def test_resized_shape_matches_resize_shortest_edge():
    assert _resized_shape(480, 640, 800, 1333) == (800, 1067)
    assert _resized_shape(480, 640, 320, 533) == (320, 427)
    assert _resized_shape(100, 1000, 800, 1333) == (133, 1333)  # the long side caps


@pytest.fixture(scope="module")
def dataset(synthetic):
    return DetectionDataset(*synthetic["train"], min_size=120, max_size=1000, flip_prob=0.5, with_masks=True,
                            filter_empty=True)


def test_item_contents_and_flip(dataset):
    plain = dataset[(0, 1)]
    seeds = [s for s in range(20) if dataset[(0, s)]["flipped"] != plain["flipped"]]
    other = dataset[(0, seeds[0])]
    a, b = (plain, other) if not plain["flipped"] else (other, plain)
    assert a["image"].shape == (3, 120, 160) and a["size"] == (120, 160) and a["orig_size"] == (240, 320)
    assert torch.equal(a["image"].flip(-1), b["image"])
    # masks are the flipped polygons rasterised (as detectron2 does); pycocotools' rule samples a
    # column on its 1/5-pixel grid, so a flip moves a few boundary pixels
    from maskrep.ops import mask_iou

    ma, mb = a["masks"].to_bitmap(), b["masks"].to_bitmap()
    assert ma.shape == (len(a["boxes"]), *a["size"]) and set(a["masks"].kinds) == {"polygons", "bitmap"}
    assert mask_iou(ma[:, :, ::-1], mb).mean() > 0.9
    bitmaps = [k for k, kind in enumerate(a["masks"].kinds) if kind == "bitmap"]  # nearest neighbour: exact mirror
    assert np.array_equal(ma[bitmaps][:, :, ::-1], mb[bitmaps])
    w = a["size"][1]
    torch.testing.assert_close(b["boxes"][:, [0, 2]], w - a["boxes"][:, [2, 0]])
    # the boxes enclose the masks they come with
    for box, m in zip(a["boxes"], ma):
        if m.any():
            rows, cols = np.nonzero(m)
            assert box[0] <= cols.min() + 1 and box[2] >= cols.max() - 1 and box[1] <= rows.min() + 1
    assert len(a["masks"]) == len(a["labels"]) == len(a["boxes"])


def test_collate_pads_to_32(dataset):
    images, targets = collate([dataset[(0, 1)], dataset[(1, 1)]])
    assert images.shape[-2] % 32 == 0 and images.shape[-1] % 32 == 0 and images.dtype == torch.uint8
    h, w = targets[0]["size"]
    assert torch.equal(images[0, :, :h, :w], dataset[(0, 1)]["image"]) and images[0, :, h:].sum() == 0


def test_training_batches_are_resumable_and_sharded():
    full = list(itertools.islice(iter(TrainingBatches(10, 3, seed=4)), 12))
    resumed = list(itertools.islice(iter(TrainingBatches(10, 3, seed=4, start_iter=5)), 7))
    assert resumed == full[5:]
    # every epoch is a permutation
    flat = [i for b in full for i, _ in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    r0 = list(itertools.islice(iter(TrainingBatches(10, 2, seed=4, rank=0, world_size=2)), 3))
    r1 = list(itertools.islice(iter(TrainingBatches(10, 2, seed=4, rank=1, world_size=2)), 3))
    one = list(itertools.islice(iter(TrainingBatches(10, 4, seed=4)), 3))
    assert [a + b for a, b in zip(r0, r1)] == one


def test_missing_image_names_the_file(tmp_path, synthetic):
    from maskrep.data import AnnotationError

    with pytest.raises(AnnotationError, match=r"annotation 1 \(image 1\): image file .*000000000001.jpg does not exist"):
        DetectionDataset(synthetic["val"][0], tmp_path)


@pytest.mark.parametrize("min_size", [240, 100])
def test_perfect_detections_score_ap_one(synthetic, min_size):
    """At the original size (240) masks and boxes are the ground truth exactly; at 100 the boxes
    still round-trip through the resize (the masks, rasterised at 100, lose thin parts)."""
    ds = DetectionDataset(*synthetic["val"], min_size=min_size, max_size=1000, with_masks=True)
    results = []
    for i in range(len(ds)):
        item = ds[i]
        n = len(item["boxes"])
        maps = torch.from_numpy(item["masks"].to_bitmap()).float()  # (n, h, w): image frame at stride 1
        det = {"boxes": item["boxes"], "scores": torch.linspace(1, 0.5, n), "labels": item["labels"],
               "mask": MaskMaps(maps, "image", stride=1)}
        results.extend(detections_to_coco(det, item, ds.category_ids))
    assert results and "segmentation" in results[0]
    box = coco_eval(ds.coco.path, results, "bbox")
    assert box["AP50"] == pytest.approx(1.0) and box["AP"] > 0.95  # boxes round-trip through the resize
    if min_size == 240:
        segm = coco_eval(ds.coco.path, results, "segm")
        assert segm["AP50"] == pytest.approx(1.0) and segm["AP"] == pytest.approx(1.0)
    assert coco_eval(ds.coco.path, [], "bbox")["AP"] == 0.0


def test_coco_eval_leaves_results_untouched(synthetic):
    ds = DetectionDataset(*synthetic["val"], min_size=100, max_size=1000)
    item = ds[0]
    det = {"boxes": item["boxes"], "scores": torch.ones(len(item["boxes"])), "labels": item["labels"]}
    results = detections_to_coco(det, item, ds.category_ids)
    coco_eval(ds.coco.path, results, "bbox")
    assert "segmentation" not in results[0] and "area" not in results[0]


def test_loader_with_workers_gives_the_same_batches(synthetic):
    from maskrep.data.detection import make_loader

    ds = DetectionDataset(*synthetic["train"], min_size=64, max_size=200, flip_prob=0.5, filter_empty=True)
    got = []
    for workers in (0, 2):
        loader = iter(make_loader(ds, TrainingBatches(len(ds), 2, seed=3), num_workers=workers))
        got.append([next(loader) for _ in range(3)])
    for (ia, ta), (ib, tb) in zip(*got):
        assert torch.equal(ia, ib)
        assert [t["image_id"] for t in ta] == [t["image_id"] for t in tb]
        assert [t["flipped"] for t in ta] == [t["flipped"] for t in tb]
