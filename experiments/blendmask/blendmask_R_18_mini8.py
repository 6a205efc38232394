"""BlendMask on the CPU check of docs/heads_cpu.md: FCOS R-18 from scratch on 8 coco-mini train images
at shorter side 320 (experiments/fcos/fcos_R_18_mini8.py), plus BlendMask's head with a 64-channel,
2-conv bottom module.

    MASKREP_DATASETS=../shared/data maskrep train --config experiments/blendmask/blendmask_R_18_mini8.py
"""

import os

from maskrep.engine import recipe

cfg, mini8 = recipe.load_config(os.path.join(os.path.dirname(__file__), "..", "fcos", "fcos_R_18_mini8.py"))
cfg["data"].update(with_masks=True)
cfg["model"]["mask_head"] = {"name": "blendmask", "num_bases": 4, "attn_size": 14, "mask_size": 56,
                             "attention": "blendmask", "basis_channels": 64, "basis_convs": 2, "norm": "GN",
                             "mask_weight": 1.0, "semantic_weight": 0.3}
cfg["model"]["fcos"].update(thresh_with_ctr=True, use_scale=False)
cfg["out_dir"] = "outputs/blendmask_R_18_mini8"
build_datasets, build_optimizer = mini8.build_datasets, mini8.build_optimizer
