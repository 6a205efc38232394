"""FCOS R-50 1x as AdelaiDet trains it, for weights converted from an AdelaiDet checkpoint:
MSRA ResNet (stride in the 1x1 conv), BGR input with the MSRA mean and unit std.

    maskrep convert adelaidet-fcos FCOS_R_50_1x.pth outputs/fcos_R_50_1x_adelaidet.pth
    maskrep eval --config experiments/fcos/fcos_R_50_1x_adelaidet.py \
        --checkpoint outputs/fcos_R_50_1x_adelaidet.pth --data instances_val2017.json val2017/
"""

from maskrep.detection.convert import ADELAIDET_INPUT
from maskrep.engine.recipe import base_config

cfg = base_config()
cfg["model"].update(stride_in_1x1=True, **ADELAIDET_INPUT)
cfg["out_dir"] = "outputs/fcos_R_50_1x_adelaidet"
