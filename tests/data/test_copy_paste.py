"""Copy-paste scenes: seeded, COCO-valid, occlusion-correct, and disjoint when their sources are."""

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from pycocotools.coco import COCO

from maskrep.cli import main
from maskrep.ops import masks_to_boxes


def _scenes(synthetic, tmp_path, split, seed=0, *more):
    ann, images = synthetic[split]
    out = tmp_path / f"cp_{split}_{seed}"
    assert main(["synth", "--copy-paste", "--annotations", ann, "--images", images, "--out", str(out),
                 "--num-images", "4", "--size", "96", "--seed", str(seed), "--split", split, *more]) == 0
    return out, out / "annotations" / f"instances_{split}.json"


def test_copy_paste_scenes_are_seeded_and_coco_valid(synthetic, tmp_path):
    out, path = _scenes(synthetic, tmp_path, "train")
    again, path2 = _scenes(synthetic, tmp_path / "again", "train")
    assert path.read_bytes() == path2.read_bytes()
    assert (out / "train" / "000000000001.jpg").read_bytes() == (again / "train" / "000000000001.jpg").read_bytes()
    coco = COCO(str(path))
    doc = json.loads(path.read_text())
    assert len(doc["images"]) == 4 and doc["annotations"] and doc["categories"] == [
        {"id": 1, "name": "object", "supercategory": "object"}]
    for image in doc["images"]:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        masks = np.stack([coco.annToMask(a).astype(bool) for a in anns])
        assert (masks.sum(0) <= 1).all()  # visible parts never overlap: occluded pixels belong to the top object
        for a, m in zip(anns, masks):
            assert a["area"] == m.sum() and a["iscrowd"] == 0
            x0, y0, x1, y1 = masks_to_boxes(m[None])[0]
            assert a["bbox"] == [x0, y0, x1 - x0, y1 - y0]
            assert mask_utils.area(a["segmentation"]) == a["area"]


def test_train_and_test_scenes_from_disjoint_sources_share_no_object(synthetic, tmp_path):
    _, train = _scenes(synthetic, tmp_path, "train")
    _, val = _scenes(synthetic, tmp_path, "val", 1, "--classes")
    sources = {}
    for split, path in (("train", train), ("val", val)):
        doc = json.loads(Path(path).read_text())
        sources[split] = {(a["source"]["image_id"], a["source"]["ann_id"]) for a in doc["annotations"]}
    train_src = json.loads(Path(synthetic["train"][0]).read_text())
    val_src = json.loads(Path(synthetic["val"][0]).read_text())
    assert sources["train"] <= {(a["image_id"], a["id"]) for a in train_src["annotations"]}
    assert sources["val"] <= {(a["image_id"], a["id"]) for a in val_src["annotations"]}
    infos = [json.loads(Path(p).read_text())["info"]["source"] for p in (train, val)]
    assert infos == [str(Path(synthetic[s][0]).resolve()) for s in ("train", "val")]  # each from its own set
    assert {c["id"] for c in json.loads(Path(val).read_text())["categories"]} == {
        c["id"] for c in val_src["categories"]}  # --classes keeps the COCO categories
