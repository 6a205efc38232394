"""MEInst on the CPU check of docs/heads_cpu.md: FCOS R-18 from scratch on 8 coco-mini train images at
shorter side 320 (experiments/fcos/fcos_R_18_mini8.py), plus MEInst's head with a 2-conv mask tower.

    MASKREP_DATASETS=../shared/data maskrep train --config experiments/meinst/meinst_R_18_mini8.py

The PCA matrix (28 x 28, D = 60, logit space, whitened) is fitted on all of coco-mini train2017
(1,569 instances) the first time, as MEInst fits its matrix on the training set before training,
and saved to outputs/codecs/; checkpoints carry it.
"""

import os

from maskrep.codecs import PCACodec
from maskrep.data import CocoInstances
from maskrep.engine import fit_codec, recipe

cfg, mini8 = recipe.load_config(os.path.join(os.path.dirname(__file__), "..", "fcos", "fcos_R_18_mini8.py"))
cfg["data"].update(with_masks=True)
cfg["model"]["mask_head"] = {"name": "meinst", "codec": "outputs/codecs/pca28_d60_coco-mini-train.npz",
                             "num_convs": 2, "loss": "mse", "jitter": True}
cfg["out_dir"] = "outputs/meinst_R_18_mini8"
build_datasets, build_optimizer = mini8.build_datasets, mini8.build_optimizer


def build_model(cfg, num_classes):
    codec = cfg["model"]["mask_head"]["codec"]
    if isinstance(codec, str) and not os.path.exists(codec):
        annotations = recipe.coco_split("coco-mini", "train2017")[0]
        train = list(CocoInstances(recipe.resolve_path(annotations, "data.train")))
        print(f"fitting the PCA matrix on {len(train)} coco-mini train instances -> {codec}")
        os.makedirs(os.path.dirname(codec), exist_ok=True)
        fit_codec(PCACodec(mask_size=28, dim=60), train).save(codec)
    return recipe.build_model(cfg, num_classes)
