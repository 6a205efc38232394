"""MEInst's coefficient head with any codec, on the CPU check of docs/heads_cpu.md: the same detector,
data and schedule as experiments/meinst/meinst_R_18_mini8.py, the codec given as a spec.

    MASKREP_DATASETS=../shared/data maskrep train --config experiments/meinst/meinst_codec_R_18_mini8.py \\
        model.mask_head.codec=contour:mask_size=28,dim=60 out_dir=outputs/meinst_contour_R_18_mini8

``model.mask_head.codec`` is a saved codec (.npz) or ``name:key=value,...``; a codec that learns is
fitted on all of coco-mini train2017 the first time and kept in outputs/codecs/ (checkpoints carry
it). With ``loss="auto"``, codecs that decode to logits train on the decoded crop (``"mask"``:
pixel BCE, no code ordering or scale to choose), the others on the codes (``"mse"``, MEInst's
default). The code predictor starts at the code of the ellipse inscribed in the box
(``code_init="ellipse"``), not at 0, which for most codecs is no shape at all.
"""

import os

from maskrep.data import CocoInstances
from maskrep.engine import fit_or_load, recipe

cfg, mini8 = recipe.load_config(os.path.join(os.path.dirname(__file__), "..", "fcos", "fcos_R_18_mini8.py"))
cfg["data"].update(with_masks=True)
cfg["model"]["mask_head"] = {"name": "meinst", "codec": "dct:mask_size=28,dim=60", "num_convs": 2, "loss": "auto",
                             "code_init": "ellipse"}
cfg["out_dir"] = "outputs/meinst_codec_R_18_mini8"
build_datasets, build_optimizer = mini8.build_datasets, mini8.build_optimizer


def fitted_codec(spec):
    """The codec of ``spec``; one that learns is fitted on coco-mini train2017 once and cached."""
    if not isinstance(spec, str) or spec.endswith(".npz"):
        return recipe.resolve_codec(spec)

    def train():
        annotations = recipe.coco_split("coco-mini", "train2017")[0]
        return list(CocoInstances(recipe.resolve_path(annotations, "data.train")))

    return fit_or_load(spec, train, os.path.join("outputs", "codecs"), "coco-mini-train")


def build_model(cfg, num_classes):
    head = dict(cfg["model"]["mask_head"])
    head["codec"] = fitted_codec(head["codec"])
    if head["loss"] == "auto":
        head["loss"] = "mask" if head["codec"].module().logit_space else "mse"
    return recipe.build_model({**cfg, "model": {**cfg["model"], "mask_head": head}}, num_classes)
