"""CRMask: per-location U, s, V units decoded by a non-parametric product (docs/methods.md §3)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...codecs.svd import SVDCodec, SVDModule, compose_units, split_units
from ...structures import crop_batch
from ..fcos import FCOSOutput, Positives
from .base import MaskHead, MaskMaps, gt_masks_of

__all__ = ["CRMaskHead"]


class CRMaskHead(MaskHead):
    """CRMask's head: three 3x3 convs on FCOS's box tower predict U (S, k), s (k) and V (S, k).

    Parameters
    ----------
    codec : SVDCodec, or None for CRMask's (S = 14, k = 3, "cls"): the representation the head
        predicts. Its S and k size the convs, k (2S + 1) = 87 numbers per location, never an
        unrelated setting (the original sized U and V by BlendMask's basis count, 4 x 42, and could
        not run its own default configuration). Its mode: "cls": s = exp(x), the product
        Û diag(s) V̂ᵀ is a logit map trained by BCE against the binary S x S crop of the GT in its
        box. "reg": s = ReLU(x)² at inference; in training the product uses the GT crop's singular
        values (teacher forcing) and is fitted by MSE to the crop's rank-k SVD reconstruction, while
        ReLU(x) is fitted to sqrt(s_GT).
    in_channels : FPN (box-tower) channels.
    mask_weight, sigma_weight : CRMask's hard-coded 2.0 weights of the mask and singular-value
        losses, here settings.

    Notes
    -----
    Losses: ``loss_mask`` = mask_weight Σ_i c_i mean_p ℓ_ip / loss_denorm over every FCOS positive
    (ℓ: BCE in 'cls', squared error in 'reg'); in 'reg' also ``loss_sigma`` = sigma_weight Σ_i c_i
    mean_l (ReLU(x_il) - sqrt(s_il))² / loss_denorm. The column normalisation adds 1e-6 under the
    square root, so a zero column gives zeros, not NaN. Inference pastes the probabilities ('cls')
    or the unclamped values ('reg', as CRMask does) into the detection's box, threshold 0.5.
    FCOS in CRMask's configurations thresholds on cls x ctr (``thresh_with_ctr=True``).

    Deliberate differences from CRMask's code: the convs are sized by the codec's S and k (above);
    the column normalisation has its 1e-6; the loss weights are settings; the global mask branch,
    whose output nothing consumes, is not built; 'reg' takes the SVD from ``torch.linalg.svd``
    (rows of Vᴴ, where CRMask's ``torch.svd`` returns V).
    """

    in_features: tuple[str, ...] = ()  # only FCOS's box tower

    def __init__(self, *, codec: SVDCodec | None = None, in_channels: int = 256, mask_weight: float = 2.0,
                 sigma_weight: float = 2.0):
        super().__init__()
        codec = SVDCodec() if codec is None else codec
        if not isinstance(codec, SVDCodec):
            raise TypeError(f"CRMaskHead predicts CRMask's units: it takes an svd codec, got {codec!r}")
        self.codec = codec
        mask_size, rank, mode = codec.mask_size, codec.rank, codec.mode
        self.mask_size, self.rank, self.mode = mask_size, rank, mode
        self.mask_weight, self.sigma_weight = float(mask_weight), float(sigma_weight)
        self.u_pred = nn.Conv2d(in_channels, mask_size * rank, 3, 1, 1)
        self.s_pred = nn.Conv2d(in_channels, rank, 3, 1, 1)
        self.v_pred = nn.Conv2d(in_channels, mask_size * rank, 3, 1, 1)
        for conv in (self.u_pred, self.s_pred, self.v_pred):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        # the codec's decoder, reading s as the head predicts it: log s ('cls') or sqrt(s) through a ReLU ('reg')
        self.decoder = SVDModule(mask_size=mask_size, rank=rank, mode=mode, logit_scale=codec.logit_scale,
                                 s_activation="exp" if mode == "cls" else "relu_square")

    def forward(self, features: dict[str, torch.Tensor], fcos_out: FCOSOutput) -> dict:
        # codes in the SVD codec's layout: U (S k, row-major over (S, k)), s (k), V (S k)
        return {"codes": [torch.cat([self.u_pred(t), self.s_pred(t), self.v_pred(t)], 1) for t in fcos_out.bbox_towers]}

    def losses(self, head_out: dict, fcos_out: FCOSOutput, positives: Positives,
               targets: list[dict]) -> dict[str, torch.Tensor]:
        codes = self.at_positives(head_out["codes"], positives).float()  # (P, k (2S + 1))
        if len(positives) == 0:
            zero = self.zero_loss(head_out)
            return {"loss_mask": zero} if self.mode == "cls" else {"loss_mask": zero, "loss_sigma": zero}
        crops = crop_batch(gt_masks_of(targets, "CRMaskHead"), positives.gt_inds, positives.gt_boxes,
                           self.mask_size).float()  # (P, S, S)
        if self.mode == "cls":
            logits = self.decoder.decode_logits(codes)  # (P, S, S)
            per = F.binary_cross_entropy_with_logits(logits, crops, reduction="none").mean((1, 2))
            return {"loss_mask": self.weighted_mean(per, positives, self.mask_weight)}
        u, s_raw, v = split_units(codes, self.mask_size, self.rank)
        with torch.no_grad():
            u_gt, s_gt, vh_gt = torch.linalg.svd(crops)  # the crop's SVD, singular values descending
            k = self.rank
            s_gt = s_gt[:, :k]  # (P, k)
            target = torch.einsum("nik,nk,nkj->nij", u_gt[:, :, :k], s_gt, vh_gt[:, :k])  # rank-k reconstruction
        pred = compose_units(u, s_gt, v)  # teacher-forced singular values
        per = ((pred - target) ** 2).mean((1, 2))
        per_sigma = ((torch.relu(s_raw) - s_gt.sqrt()) ** 2).mean(1)
        return {"loss_mask": self.weighted_mean(per, positives, self.mask_weight),
                "loss_sigma": self.weighted_mean(per_sigma, positives, self.sigma_weight)}

    @torch.no_grad()
    def predict(self, head_out: dict, fcos_out: FCOSOutput, detections: list[dict]) -> None:
        for i, det in enumerate(detections):
            codes = self.at_detections(head_out["codes"], det, i).float()
            det["mask"] = MaskMaps(self.decoder.paste_maps(codes), "box")
