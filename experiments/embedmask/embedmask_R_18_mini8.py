"""EmbedMask on the CPU check of docs/heads_cpu.md: FCOS R-18 from scratch on 8 coco-mini train images
at shorter side 320 (experiments/fcos/fcos_R_18_mini8.py), plus EmbedMask's head with a 64-channel,
2-conv pixel branch.

    MASKREP_DATASETS=../shared/data maskrep train --config experiments/embedmask/embedmask_R_18_mini8.py
"""

import os

from maskrep.engine import recipe

cfg, mini8 = recipe.load_config(os.path.join(os.path.dirname(__file__), "..", "fcos", "fcos_R_18_mini8.py"))
cfg["data"].update(with_masks=True)
cfg["model"]["mask_head"] = {"name": "embedmask", "embed_dim": 16, "prior_margin": 2.0, "branch_channels": 64,
                             "branch_convs": 2, "norm": "GN", "max_proposals": 500, "mask_weight": 1.0,
                             "semantic_weight": 1.0, "restrict_to_box": True, "box_margin": 2}
cfg["model"]["fcos"].update(thresh_with_ctr=True)
cfg["out_dir"] = "outputs/embedmask_R_18_mini8"
build_datasets, build_optimizer = mini8.build_datasets, mini8.build_optimizer
