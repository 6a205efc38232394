"""CRMask R-50 1x on FCOS: U (14 x 3), s (3), V (14 x 3) per location from the box tower, 'cls' mode,
the BCE of the decoded 14 x 14 logit map (weight 2.0); FCOS thresholds on cls x ctr. CRMask's base
schedule: batch 8, LR 0.005, 180k iterations (steps 120k/160k), shorter side 640-800.

    maskrep train --config experiments/crmask/crmask_R_50_1x.py model.backbone_weights=torchvision://resnet50
"""

from maskrep.engine.recipe import base_config

cfg = base_config()
cfg["data"].update(with_masks=True, min_size_train=(640, 672, 704, 736, 768, 800))
cfg["model"]["mask_head"] = {"name": "crmask", "codec": "svd:mask_size=14,rank=3,mode=cls",
                             "mask_weight": 2.0, "sigma_weight": 2.0}
cfg["model"]["fcos"].update(thresh_with_ctr=True)
cfg["solver"].update(batch_size=8, lr=0.005, max_iter=180000, steps=(120000, 160000))
cfg["out_dir"] = "outputs/crmask_R_50_1x"
