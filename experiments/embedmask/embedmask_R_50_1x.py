"""EmbedMask R-50 1x (arXiv:1912.01954) on FCOS, after its authors' detectron2 port: D = 16 embeddings,
per-dimension margins, every positive (at most 500), the Lovász hinge, the focal semantic loss, and
masks restricted to the predicted box at inference; FCOS thresholds on cls x ctr; batch 16,
LR 0.01, 90k iterations, shorter side 640-800.

    maskrep train --config experiments/embedmask/embedmask_R_50_1x.py model.backbone_weights=torchvision://resnet50

The port normalises its pixel branch with BN; here GroupNorm (model.mask_head.norm).
Published (the port's README): MS R-50 1x 39.9 box AP, 36.2 mask AP (val2017).
"""

from maskrep.engine.recipe import base_config

cfg = base_config()
cfg["data"].update(with_masks=True, min_size_train=(640, 672, 704, 736, 768, 800))
cfg["model"]["mask_head"] = {"name": "embedmask", "embed_dim": 16, "prior_margin": 2.0, "branch_channels": 128,
                             "branch_convs": 4, "norm": "GN", "max_proposals": 500, "mask_weight": 1.0,
                             "semantic_weight": 1.0, "restrict_to_box": True, "box_margin": 2}
cfg["model"]["fcos"].update(thresh_with_ctr=True)
cfg["out_dir"] = "outputs/embedmask_R_50_1x"
