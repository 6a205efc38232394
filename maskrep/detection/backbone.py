"""ResNet-18/34/50/101 and an FPN, in plain torch.

Parameter names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ...), so an ImageNet state dict saved from torchvision loads with
:func:`load_backbone_weights` (``"torchvision://resnet50"`` downloads torchvision's once, into a cache). Inputs are RGB in [0, 255]; the detector
normalises them with torchvision's ImageNet mean and std to match such weights.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["FPN", "FrozenBatchNorm2d", "ResNet", "conv_tower", "load_backbone_weights", "make_norm"]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (buffers, never trained)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)  # torchvision BN files carry it
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None].to(x.dtype) + shift[None, :, None, None].to(x.dtype)


def make_norm(kind: str, channels: int) -> nn.Module:
    """``"FrozenBN"``, ``"BN"`` or ``"GN"`` (32 groups, fewer when channels are few)."""
    if kind == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if kind == "BN":
        return nn.BatchNorm2d(channels)
    if kind == "GN":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    raise ValueError(f"norm must be 'FrozenBN', 'BN' or 'GN', got {kind!r}")


def conv_tower(channels: int, num_convs: int, norm: str | None = "GN", *, in_channels: int | None = None,
               bias: bool = True) -> nn.Sequential:
    """``num_convs`` x [3x3 conv, norm, ReLU] (FCOS's towers, MEInst's mask tower), N(0, 0.01) init.

    ``bias``: the convs carry a bias even before a norm, as AdelaiDet's heads do.
    """
    layers = []
    for k in range(num_convs):
        conv = nn.Conv2d(in_channels if (k == 0 and in_channels) else channels, channels, 3, 1, 1, bias=bias)
        nn.init.normal_(conv.weight, std=0.01)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        layers.append(conv)
        if norm:
            layers.append(make_norm(norm, channels))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride, norm, stride_in_1x1=False):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = make_norm(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = make_norm(norm, width)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), make_norm(norm, cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(out + skip)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride, norm, stride_in_1x1=False):
        super().__init__()
        cout = width * self.expansion
        # stride on the 3x3 (torchvision), or on the first 1x1 (MSRA weights, detectron2's default)
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(cin, width, 1, s1, bias=False)
        self.bn1 = make_norm(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, s3, 1, bias=False)
        self.bn2 = make_norm(norm, width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = make_norm(norm, cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), make_norm(norm, cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(out + skip)


_SPECS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
          50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


class ResNet(nn.Module):
    """ResNet trunk returning C2..C5 (strides 4, 8, 16, 32).

    Parameters
    ----------
    depth : 18, 34, 50 or 101.
    norm : "FrozenBN" (for pretrained weights), "BN" or "GN" (for training from scratch).
    freeze_at : 0 trains everything; 1 freezes the stem; k >= 2 also freezes layer1..layer(k-1)
        (detectron2's FREEZE_AT).
    width : channels of layer1 (64 in the papers; smaller for quick experiments).
    stride_in_1x1 : put a bottleneck's stride on its first 1x1 conv, as the MSRA weights (and so
        detectron2 / AdelaiDet checkpoints) expect; torchvision's weights want it on the 3x3.
    """

    def __init__(self, depth: int = 50, *, norm: str = "FrozenBN", freeze_at: int = 2, width: int = 64,
                 stride_in_1x1: bool = False):
        super().__init__()
        if depth not in _SPECS:
            raise ValueError(f"depth must be one of {sorted(_SPECS)}, got {depth}")
        block, counts = _SPECS[depth]
        self.depth = depth
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = make_norm(norm, width)
        cin = width
        self.out_channels = []
        for i, n in enumerate(counts):
            w = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1, norm, stride_in_1x1))
                cin = w * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.out_channels.append(cin)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> None:
        stages = [[self.conv1, self.bn1]] + [[getattr(self, f"layer{i}")] for i in range(1, 5)]
        for stage in stages[: max(freeze_at, 0)]:
            for m in stage:
                for p in m.parameters():
                    p.requires_grad_(False)

    def forward(self, x) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 3, 2, 1)
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            outs.append(x)
        return outs


def load_backbone_weights(model: ResNet, path: str | os.PathLike) -> list[str]:
    """Load a torchvision-named ResNet state dict (``fc.*`` ignored); returns the missing keys.

    ``path``: a file, or ``torchvision://resnet50`` (and the other depths): torchvision's ImageNet
    weights, downloaded once into maskrep's cache and checked (:mod:`maskrep.detection.weights`).
    """
    from .weights import resolve_weights

    path = resolve_weights(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"backbone weights not found: {path}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{path}: keys that are not ResNet-{model.depth} parameters: {result.unexpected_keys[:5]}")
    return list(result.missing_keys)


class FPN(nn.Module):
    """Feature pyramid over C3..C5 (optionally C2) with P6/P7 from P5, AdelaiDet style.

    P6 = conv3x3/2(P5), P7 = conv3x3/2(ReLU(P6)). Returns [P2,] P3..P7, ``channels`` each.
    Init: Kaiming-uniform (a=1), bias 0.
    """

    def __init__(self, in_channels: list[int], channels: int = 256, *, top_levels: int = 2, use_p2: bool = False,
                 norm: str | None = None):
        super().__init__()
        self.use_p2 = use_p2
        ins = in_channels if use_p2 else in_channels[1:]
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1, bias=norm is None) for c in ins)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, 1, 1, bias=norm is None) for _ in ins)
        self.lateral_norm = nn.ModuleList(make_norm(norm, channels) if norm else nn.Identity() for _ in ins)
        self.output_norm = nn.ModuleList(make_norm(norm, channels) if norm else nn.Identity() for _ in ins)
        self.top = nn.ModuleList(nn.Conv2d(channels, channels, 3, 2, 1) for _ in range(top_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.strides = ([4] if use_p2 else []) + [8, 16, 32] + [64 * 2**i for i in range(top_levels)]
        #: the levels' names, finest first: "p<k>" has stride 2**k
        self.level_names = tuple(f"p{s.bit_length() - 1}" for s in self.strides)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        feats = feats if self.use_p2 else feats[1:]
        prev = None
        outs = []
        for i in range(len(feats) - 1, -1, -1):
            lat = self.lateral_norm[i](self.lateral[i](feats[i]))
            if prev is not None:
                lat = lat + F.interpolate(prev, size=lat.shape[-2:], mode="nearest")
            prev = lat
            outs.insert(0, self.output_norm[i](self.output[i](lat)))
        x = outs[-1]
        for i, conv in enumerate(self.top):
            x = conv(F.relu(x) if i > 0 else x)
            outs.append(x)
        return outs
