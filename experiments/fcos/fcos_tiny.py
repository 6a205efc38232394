"""A tiny FCOS for smoke runs and tests: a narrow ResNet-18 at shorter side 128, a few iterations.

    maskrep synth --out outputs/synth
    maskrep train --config experiments/fcos/fcos_tiny.py \
        --data outputs/synth/annotations/instances_train.json outputs/synth/train
"""

from maskrep.engine.recipe import base_config

cfg = base_config()
cfg["data"].update(min_size_train=(128,), max_size_train=192, min_size_test=128, max_size_test=192, num_workers=0)
cfg["model"].update(depth=18, norm="GN", freeze_at=0, width=8, fpn_channels=16)
cfg["model"]["fcos"].update(num_convs=1)
cfg["solver"].update(batch_size=2, lr=0.01, max_iter=6, steps=(4,), warmup_iters=2, checkpoint_period=3,
                     amp=None, log_period=1, clip_grad=5.0)
cfg["out_dir"] = "outputs/fcos_tiny"
