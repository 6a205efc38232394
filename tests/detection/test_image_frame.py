"""Image-frame masks (EmbedMask, CenterMask) land where their training targets were sampled."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from maskrep.assembly.embedding import box_cells
from maskrep.detection.heads import MaskMaps
from maskrep.detection.postprocess import masks_in_image
from maskrep.structures import InstanceMasks


def _port_aligned_bilinear(x: torch.Tensor, f: int) -> torch.Tensor:
    """AdelaiDet's up-sampling as its code computes it: replicate-pad right/bottom, interpolate with
    align_corners=True to f n + 1 points, replicate-pad f // 2 at the left/top, crop."""
    h, w = x.shape[-2:]
    x = F.pad(x, (0, 1, 0, 1), mode="replicate")
    x = F.interpolate(x, size=(f * h + 1, f * w + 1), mode="bilinear", align_corners=True)
    x = F.pad(x, (f // 2, 0, f // 2, 0), mode="replicate")
    return x[:, :, : f * h, : f * w]


def _port_paste(maps: torch.Tensor, stride: int, input_size, output_size) -> torch.Tensor:
    """EmbedMask's detectron2 port: up-sample to the padded input, crop the padding, resize to the
    original image (bilinear, align_corners=False); returns the probabilities."""
    h, w = input_size
    up = _port_aligned_bilinear(maps[:, None], stride)[:, :, :h, :w]
    return F.interpolate(up, size=output_size, mode="bilinear", align_corners=False)[:, 0]


@pytest.mark.parametrize("input_size,output_size", [((60, 90), (60, 90)), ((60, 90), (113, 171)),
                                                    ((57, 90), (41, 65))])
def test_image_frame_paste_equals_the_port(input_size, output_size):
    g = torch.Generator().manual_seed(0)
    stride = 4
    padded = (-(-input_size[0] // 32) * 32, -(-input_size[1] // 32) * 32)
    coarse = torch.rand(6, 1, padded[0] // 16, padded[1] // 16, generator=g)  # smooth maps crossing 0.5
    maps = F.interpolate(coarse, size=(padded[0] // stride, padded[1] // stride), mode="bilinear",
                         align_corners=False)[:, 0]
    ours = masks_in_image(MaskMaps(maps, "image", stride=stride), None, input_size, output_size)
    port = _port_paste(maps, stride, input_size, output_size)
    differ = ours != (port > 0.5).numpy()
    assert ours.any() and (~ours).any()
    # only pixels at the threshold itself may differ (the port's > against maskrep's >=, roundings)
    assert np.all(np.abs(port.numpy()[differ] - 0.5) < 1e-6), int(differ.sum())


def test_cell_i_lands_on_pixel_i_stride_plus_half_stride():
    maps = torch.zeros(1, 4, 4)
    maps[0, 1, 2] = 1.0  # one cell: at stride 4 it stands for pixel (1 * 4 + 2, 2 * 4 + 2) = (6, 10)
    mask = MaskMaps(maps, "image", stride=4, threshold=0.99)
    out = masks_in_image(mask, None, (16, 16), (16, 16))[0]
    assert np.argwhere(out).tolist() == [[6, 10]]


def _blob_masks(rng, n: int, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for _ in range(n):
        cy, cx = rng.uniform(20, size - 20, 2)
        ry, rx = rng.uniform(6, 18, 2)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u, v = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
        out.append((u / rx) ** 2 + (v / ry) ** 2 < 1)
    return np.stack(out)


def _centroid_shift(gt: np.ndarray, stride: int, input_size, output_size):
    """Sample (N, h, w) masks at ``stride`` as the training targets are, paste them back to
    ``output_size``: the mean centroid shift (dy, dx) in output pixels and the mean IoU."""
    h, w = input_size
    padded = (-(-h // 32) * 32, -(-w // 32) * 32)
    sampled = InstanceMasks.from_bitmaps(gt).to_bitmap(stride, padded)
    back = masks_in_image(MaskMaps(torch.from_numpy(sampled).float(), "image", stride=stride), None, input_size,
                          output_size)
    truth = gt if output_size == input_size else F.interpolate(
        torch.from_numpy(gt)[:, None].float(), size=output_size, mode="nearest")[:, 0].numpy() > 0.5
    shifts, ious = [], []
    for a, b in zip(back, truth):
        ya, xa = np.nonzero(a)
        yb, xb = np.nonzero(b)
        shifts.append((ya.mean() - yb.mean(), xa.mean() - xb.mean()))
        ious.append((a & b).sum() / (a | b).sum())
    return np.mean(shifts, axis=0), float(np.mean(ious))


def test_stride4_ground_truth_pasted_back_keeps_its_centroid():
    gt = _blob_masks(np.random.default_rng(0), 60, 128)
    shift, iou = _centroid_shift(gt, 4, (128, 128), (128, 128))
    assert np.hypot(*shift) < 0.1, shift
    assert iou > 0.8


@pytest.mark.realdata
def test_stride4_coco_ground_truth_pasted_back_keeps_its_centroid(coco_val):
    _, instances = coco_val
    by_image: dict = {}
    for inst in instances:
        if inst.area >= 400:
            by_image.setdefault(inst.image_id, []).append(inst)
    shifts = []
    for image_id in sorted(by_image)[:25]:
        insts = by_image[image_id]
        gt = np.stack([i.mask() for i in insts])
        shift, _ = _centroid_shift(gt, 4, gt.shape[1:], gt.shape[1:])
        shifts.append(shift * len(insts))
    mean = np.sum(shifts, axis=0) / sum(len(by_image[i]) for i in sorted(by_image)[:25])
    assert np.hypot(*mean) < 0.1, mean


def test_box_cells_use_the_centres_of_the_sampled_pixels():
    # stride 4: cell c stands for pixel 4c + 2, centre 4c + 2.5 (2.5, 6.5, 10.5, 14.5)
    inside = box_cells(torch.tensor([[6.0, 6.0, 11.0, 11.0]]), 4, 4, 4)
    assert inside[0].nonzero().tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]
    inside = box_cells(torch.tensor([[6.6, 6.6, 11.0, 11.0]]), 4, 4, 4)
    assert inside[0].nonzero().tolist() == [[2, 2]]
