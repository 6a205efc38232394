"""BlendMask with CRMask's rank-3 attentions on the CPU check of docs/heads_cpu.md
(experiments/blendmask/blendmask_R_18_mini8.py with attention="crmask").

    MASKREP_DATASETS=../shared/data maskrep train --config experiments/blendmask/blendmask_crmask_R_18_mini8.py
"""

import os

from maskrep.engine import recipe

cfg, mini8 = recipe.load_config(os.path.join(os.path.dirname(__file__), "blendmask_R_18_mini8.py"))
cfg["model"]["mask_head"].update(attention="crmask", rank=3)
cfg["out_dir"] = "outputs/blendmask_crmask_R_18_mini8"
build_datasets, build_optimizer = mini8.build_datasets, mini8.build_optimizer
