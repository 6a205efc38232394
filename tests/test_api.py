"""The public API surface, pinned: a name added to or removed from a public ``__all__`` fails here,
so the change is made on purpose (and the docs follow). Every listed name must resolve."""

import importlib

import pytest

SURFACE = {
    "maskrep": ["__version__", "assembly", "codecs", "data", "detection", "engine", "ops"],
    "maskrep.ops": ["MASK_THRESHOLD", "aligned_bilinear", "batched_nms", "binarize", "boundary_band",
        "boundary_fscore", "box_area", "box_iou", "box_xywh_to_xyxy", "box_xyxy_to_xywh", "crop_masks_in_boxes",
        "generalized_box_iou", "mask_contours", "mask_iou", "mask_iou_pairwise", "mask_to_rle", "masks_to_boxes",
        "multilevel_roi_align", "nms", "outer_contours", "paste_masks", "paste_masks_to_rle", "polygon_area",
        "polygon_signed_area", "polygons_to_mask", "polygons_to_masks", "polygons_to_rle", "rasterize_in_boxes",
        "rle_area", "rle_counts", "rle_intersection", "rle_iou", "rle_to_mask", "roi_align", "roi_levels",
        "rois_from_boxes"],
    "maskrep.codecs": ["BitmapCodec", "CAPABILITIES", "CODECS", "CodecModule", "ContourCodec", "DCTCodec",
        "LearnedCodec", "MaskCodec", "PCACodec", "PolarCodec", "SVDCodec", "codec_class", "compose_units", "get_codec",
        "list_codecs", "load", "register_codec"],
    "maskrep.assembly": ["PRIOR_MARGIN", "blend", "blend_pooled", "embedding_coupling", "margin_bias",
        "shape_saliency", "unit_attentions", "unit_product"],
    "maskrep.data": ["AnnotationError", "CocoInstance", "CocoInstances", "crop_instances"],
    "maskrep.structures": ["InstanceMasks", "crop_batch"],
    "maskrep.detection": ["Detector", "FCOS", "FCOSHead", "FCOSOutput", "FPN", "FrozenBatchNorm2d", "MaskHead",
        "MaskMaps", "Positives", "ResNet", "build_fcos", "compute_locations", "get_head", "list_heads",
        "load_backbone_weights"],
    "maskrep.detection.heads": ["BlendMaskHead", "CRMaskHead", "CenterMaskHead", "EmbedMaskHead", "HEADS",
        "MEInstHead", "MaskHead", "MaskMaps", "RefineMaskHead", "get_head", "gt_masks_of", "head_class", "list_heads",
        "register_head"],
    "maskrep.integrations": ["CodecMaskPredictor", "codec_loss", "codec_targets", "loss_kind",
        "torchvision_codec_maskrcnn"],
    "maskrep.testing": ["CODEC_CHECKS", "HEAD_CHECKS", "check_codec", "check_head", "disc_masks",
        "perturbed_detections", "small_detector", "synthetic_batch"],
    "maskrep.engine": ["evaluate_reconstruction", "fit_codec", "fit_or_load", "format_table", "iter_crops",
        "parse_codec_spec", "plot_rate_distortion", "run_grid"],
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_names_are_pinned_and_resolve(module):
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == SURFACE[module], "update SURFACE (and the docs) when the public API changes"
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ lists names it does not have: {missing}"


def test_the_root_serves_exactly_what_it_lists():
    import maskrep

    for name in maskrep.__all__:
        assert getattr(maskrep, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        maskrep.nothing  # noqa: B018
