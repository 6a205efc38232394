"""MEInst R-50 1x (arXiv:2003.11712) on FCOS, AdelaiDet's settings: 60 whitened PCA coefficients of
the 28 x 28 crop in logit space, a 4-conv mask tower, the code MSE loss; batch 16, LR 0.01, 90k
iterations (steps 60k/80k), 500 warm-up iterations at 1/3, shorter side 800.

The PCA matrix: AdelaiDet's released file works as it is, or fit one on your training set:

    maskrep fit pca --annotations $MASKREP_DATASETS/coco/annotations/instances_train2017.json \
        --mask-size 28 --dim 60 --out $MASKREP_DATASETS/coco/components/coco_2017_train_class_agnosticTrue_whitenTrue_sigmoidTrue_60.npz
    maskrep train --config experiments/meinst/meinst_R_50_1x.py model.backbone_weights=torchvision://resnet50
"""

from maskrep.engine.recipe import base_config

cfg = base_config()
cfg["data"].update(with_masks=True)
cfg["model"]["mask_head"] = {
    "name": "meinst",
    "codec": "${MASKREP_DATASETS}/coco/components/coco_2017_train_class_agnosticTrue_whitenTrue_sigmoidTrue_60.npz",
    "num_convs": 4, "loss": "mse", "jitter": True,
}
cfg["solver"].update(warmup_iters=500, warmup_factor=1 / 3, warmup_method="constant")
cfg["out_dir"] = "outputs/meinst_R_50_1x"
