"""CenterMask on the CPU check of docs/heads_cpu.md: FCOS R-18 from scratch on 8 coco-mini train images
at shorter side 320 (experiments/fcos/fcos_R_18_mini8.py), plus the shape x saliency head with a
64-channel, 2-conv saliency branch.

    MASKREP_DATASETS=../shared/data maskrep train --config experiments/centermask/centermask_R_18_mini8.py
"""

import os

from maskrep.engine import recipe

cfg, mini8 = recipe.load_config(os.path.join(os.path.dirname(__file__), "..", "fcos", "fcos_R_18_mini8.py"))
cfg["data"].update(with_masks=True)
cfg["model"]["mask_head"] = {"name": "centermask", "mask_size": 32, "saliency": "class", "saliency_channels": 64,
                             "saliency_convs": 2, "norm": "GN", "max_proposals": 500, "mask_weight": 1.0,
                             "threshold": 0.4}
cfg["out_dir"] = "outputs/centermask_R_18_mini8"
build_datasets, build_optimizer = mini8.build_datasets, mini8.build_optimizer
