"""Layers several mask heads build from: BlendMask's conv blocks and bottom module (also CenterMask's
saliency branch and EmbedMask's pixel branch)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .backbone import make_norm

__all__ = ["BasisModule", "conv_norm_relu"]


def conv_norm_relu(cin: int, cout: int, norm: str | None) -> nn.Sequential:
    """3x3 conv (no bias before a norm), norm, ReLU; Kaiming-uniform (a = 1) init, as BlendMask's."""
    conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=not norm)
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, make_norm(norm, cout), nn.ReLU()) if norm else nn.Sequential(conv, nn.ReLU())


class BasisModule(nn.Module):
    """BlendMask's bottom module ("ProtoNet"): K bases at stride 4 from P3-P5, and the auxiliary
    semantic head on P3 (training only).

    Each level is refined by a 3x3 conv to ``channels``; P4 and P5 are up-sampled bilinearly to P3
    and summed; ``num_convs`` more convs, x2 bilinear up-sampling, one conv, and a 1x1 conv to
    ``num_bases`` linear outputs. The semantic head: 2 convs on P3 normalised by ``semantic_norm``
    (BlendMask: BatchNorm, whatever the tower uses) and a 1x1 conv to ``num_classes + 1`` logits
    (background first).
    """

    def __init__(self, in_channels: int, *, num_bases: int = 4, channels: int = 128, num_convs: int = 3,
                 norm: str | None = "GN", num_classes: int | None = None, num_levels: int = 3,
                 semantic_norm: str | None = "BN"):
        super().__init__()
        self.refine = nn.ModuleList(conv_norm_relu(in_channels, channels, norm) for _ in range(num_levels))
        tower = [conv_norm_relu(channels, channels, norm) for _ in range(num_convs)]
        tower += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                  conv_norm_relu(channels, channels, norm), nn.Conv2d(channels, num_bases, 1)]
        self.tower = nn.Sequential(*tower)
        self.seg_head = None
        if num_classes is not None:
            self.seg_head = nn.Sequential(conv_norm_relu(in_channels, channels, semantic_norm),
                                          conv_norm_relu(channels, channels, semantic_norm),
                                          nn.Conv2d(channels, num_classes + 1, 1))

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[P3, P4, P5] -> bases (B, K, H/4, W/4), semantic logits (B, C + 1, H/8, W/8) in training."""
        x = self.refine[0](features[0])
        for refine, f in zip(self.refine[1:], features[1:]):
            x = x + F.interpolate(refine(f), size=x.shape[-2:], mode="bilinear", align_corners=False)
        sem = self.seg_head(features[0]) if (self.seg_head is not None and self.training) else None
        return self.tower(x), sem
