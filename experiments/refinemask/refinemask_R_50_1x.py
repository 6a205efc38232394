"""RefineMask (arXiv:2104.08569) as a second stage on FCOS, R-50 1x: P2 in the FPN, instance features
from P2-P5 at 14 x 14, a semantic branch on P2, three fusion stages to 112 x 112, the boundary-aware
loss (stage weights 0.25, 0.5, 0.75, 1.0; band width 2 to train, 1 to merge).

    maskrep train --config experiments/refinemask/refinemask_R_50_1x.py model.backbone_weights=torchvision://resnet50

RefineMask trains Mask R-CNN with LR 0.02, gradient clipping at 35 and 500 linear warm-up iterations;
here FCOS's 1x schedule with RefineMask's clipping. Published (Mask R-CNN based): 37.3 mask AP (val2017).
"""

from maskrep.engine.recipe import base_config

cfg = base_config()
cfg["data"].update(with_masks=True)
cfg["model"].update(use_p2=True)
cfg["model"]["mask_head"] = {"name": "refinemask", "class_agnostic": False, "channels": 256, "mask_size": 14,
                             "instance_convs": 2, "semantic_convs": 4, "stage_weights": (0.25, 0.5, 0.75, 1.0),
                             "semantic_weight": 1.0, "train_band": 2, "merge_band": 1, "rois_per_image": 64,
                             "min_iou": 0.5}
cfg["solver"].update(clip_grad=35.0)
cfg["out_dir"] = "outputs/refinemask_R_50_1x"
