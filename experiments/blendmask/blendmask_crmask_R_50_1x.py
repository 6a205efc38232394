"""BlendMask with CRMask's rank-3 attentions (docs/methods.md §3.3): each basis's 14 x 14 attention is
Û diag(exp s) V̂ᵀ from 87 numbers, 348 channels per location instead of 784; everything else is
BlendMask R-50 1x (experiments/blendmask/blendmask_R_50_1x.py).

    maskrep train --config experiments/blendmask/blendmask_crmask_R_50_1x.py model.backbone_weights=torchvision://resnet50
"""

import os

from maskrep.engine import recipe

cfg, _ = recipe.load_config(os.path.join(os.path.dirname(__file__), "blendmask_R_50_1x.py"))
cfg["model"]["mask_head"].update(attention="crmask", rank=3)
cfg["out_dir"] = "outputs/blendmask_crmask_R_50_1x"
