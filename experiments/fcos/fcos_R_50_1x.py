"""FCOS R-50 1x with AdelaiDet's defaults: 800/1333, batch 16, LR 0.01, 90k iterations, steps 60k/80k.

    maskrep train --config experiments/fcos/fcos_R_50_1x.py --data ANNOTATIONS IMAGE_DIR \
        model.backbone_weights=torchvision://resnet50
    torchrun --nproc_per_node 8 -m maskrep.cli train --config experiments/fcos/fcos_R_50_1x.py ...
"""

from maskrep.engine.recipe import base_config

cfg = base_config()
cfg["out_dir"] = "outputs/fcos_R_50_1x"
