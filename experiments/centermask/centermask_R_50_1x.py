"""CenterMask (Wang et al., arXiv:2004.04446) on FCOS, R-50 1x: a 32 x 32 local shape per location from
the box tower, a class-specific saliency map at stride 4, mask = sigmoid(shape in box) x
sigmoid(saliency in box), threshold 0.4. The paper's network is CenterNet and no official code
exists: this port is maskrep's (docs/heads/centermask.md says which parts are the paper's).

    maskrep train --config experiments/centermask/centermask_R_50_1x.py model.backbone_weights=torchvision://resnet50
"""

from maskrep.engine.recipe import base_config

cfg = base_config()
cfg["data"].update(with_masks=True, min_size_train=(640, 672, 704, 736, 768, 800))
cfg["model"]["mask_head"] = {"name": "centermask", "mask_size": 32, "saliency": "class", "saliency_channels": 128,
                             "saliency_convs": 3, "norm": "GN", "max_proposals": 500, "mask_weight": 1.0,
                             "threshold": 0.4}
cfg["out_dir"] = "outputs/centermask_R_50_1x"
