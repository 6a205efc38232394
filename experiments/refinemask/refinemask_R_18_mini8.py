"""RefineMask on the CPU check of docs/heads_cpu.md: FCOS R-18 from scratch on 8 coco-mini train images
at shorter side 320 (experiments/fcos/fcos_R_18_mini8.py) with P2 in the FPN, plus RefineMask's head
with 64 channels (halving to 8) and one instance and two semantic convs.

    MASKREP_DATASETS=../shared/data maskrep train --config experiments/refinemask/refinemask_R_18_mini8.py
"""

import os

from maskrep.engine import recipe

cfg, mini8 = recipe.load_config(os.path.join(os.path.dirname(__file__), "..", "fcos", "fcos_R_18_mini8.py"))
cfg["data"].update(with_masks=True)
cfg["model"].update(use_p2=True)
cfg["model"]["mask_head"] = {"name": "refinemask", "class_agnostic": False, "channels": 64, "mask_size": 14,
                             "instance_convs": 1, "semantic_convs": 2, "stage_weights": (0.25, 0.5, 0.75, 1.0),
                             "semantic_weight": 1.0, "train_band": 2, "merge_band": 1, "rois_per_image": 32,
                             "min_iou": 0.5}
cfg["out_dir"] = "outputs/refinemask_R_18_mini8"
build_datasets, build_optimizer = mini8.build_datasets, mini8.build_optimizer
