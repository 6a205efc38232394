"""BlendMask R-50 1x (arXiv:2001.00309) on FCOS, as Base-BlendMask has it: K = 4 bases at stride 4,
14 x 14 attentions, blended at 56 x 56, the auxiliary semantic loss (0.3); FCOS thresholds on
cls x ctr without per-level scales; batch 16, LR 0.01, 90k iterations, shorter side 640-800.

    maskrep train --config experiments/blendmask/blendmask_R_50_1x.py model.backbone_weights=torchvision://resnet50

BlendMask normalises its bottom module with SyncBN over 8 GPUs; here GroupNorm (model.mask_head.norm).
Published: 39.9 box AP, 35.8 mask AP (val2017, 1080Ti 14 FPS).
"""

from maskrep.engine.recipe import base_config

cfg = base_config()
cfg["data"].update(with_masks=True, min_size_train=(640, 672, 704, 736, 768, 800))
cfg["model"]["mask_head"] = {"name": "blendmask", "num_bases": 4, "attn_size": 14, "mask_size": 56,
                             "attention": "blendmask", "basis_channels": 128, "basis_convs": 3, "norm": "GN",
                             "mask_weight": 1.0, "semantic_weight": 0.3}
cfg["model"]["fcos"].update(thresh_with_ctr=True, use_scale=False)
cfg["out_dir"] = "outputs/blendmask_R_50_1x"
