"""The whole-loop check: FCOS with a ResNet-18 trained from scratch on the CPU on 8 coco-mini
train images at shorter side 320, evaluated on those same 8 images (docs/fcos_cpu.md).

    MASKREP_DATASETS=../shared/data maskrep train --config experiments/fcos/fcos_R_18_mini8.py

From scratch, so GroupNorm in the backbone and FPN instead of frozen ImageNet statistics, and
AdamW, which fits a handful of images far faster than SGD. The val set is the train images,
unflipped: the check is that targets, losses, gradients, decoding, NMS and COCO evaluation agree.
"""

import torch

from maskrep.data.detection import DetectionDataset
from maskrep.engine.recipe import base_config, coco_split, data_paths

cfg = base_config()
cfg["data"].update(train=coco_split("coco-mini", "train2017"), val=coco_split("coco-mini", "train2017"),
                   min_size_train=(320,), max_size_train=533, min_size_test=320, max_size_test=533,
                   flip_prob=0.0, num_images=8, num_workers=0)
cfg["model"].update(depth=18, norm="GN", freeze_at=0, fpn_channels=128, fpn_norm="GN")
cfg["model"]["fcos"].update(num_convs=2)
cfg["solver"].update(batch_size=8, lr=1e-3, weight_decay=1e-4, max_iter=200, steps=(150, 180), warmup_iters=50,
                     warmup_factor=0.01, clip_grad=10.0, checkpoint_period=50, amp=None, log_period=10)
cfg["eval_period"] = 50
cfg["out_dir"] = "outputs/fcos_R_18_mini8"


def build_datasets(cfg):
    d = cfg["data"]
    common = {"min_size": d["min_size_train"], "max_size": d["max_size_train"], "filter_empty": True,
              "num_images": d["num_images"]}
    train = DetectionDataset(*data_paths(cfg, "train"), flip_prob=d["flip_prob"], with_masks=d["with_masks"], **common)
    val = DetectionDataset(*data_paths(cfg, "val"), flip_prob=0.0, **common)
    return train, val


def build_optimizer(cfg, model):
    s = cfg["solver"]
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=s["lr"], weight_decay=s["weight_decay"])
