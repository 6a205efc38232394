"""CRMask on the CPU check of docs/heads_cpu.md: FCOS R-18 from scratch on 8 coco-mini train images at
shorter side 320 (experiments/fcos/fcos_R_18_mini8.py), plus CRMask's U/s/V convs ('cls' mode).

    MASKREP_DATASETS=../shared/data maskrep train --config experiments/crmask/crmask_R_18_mini8.py
"""

import os

from maskrep.engine import recipe

cfg, mini8 = recipe.load_config(os.path.join(os.path.dirname(__file__), "..", "fcos", "fcos_R_18_mini8.py"))
cfg["data"].update(with_masks=True)
cfg["model"]["mask_head"] = {"name": "crmask", "codec": "svd:mask_size=14,rank=3,mode=cls",
                             "mask_weight": 2.0, "sigma_weight": 2.0}
cfg["model"]["fcos"].update(thresh_with_ctr=True)
cfg["out_dir"] = "outputs/crmask_R_18_mini8"
build_datasets, build_optimizer = mini8.build_datasets, mini8.build_optimizer
