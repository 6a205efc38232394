"""Mask assembly: from a detector's per-instance codes and shared dense maps to instance masks.

Plain torch and differentiable (the references), with numba kernels taken at inference on the
CPU (``backend="auto"``) and torch on CUDA tensors.
"""

from .blend import blend, blend_pooled, unit_attentions, unit_product
from .embedding import PRIOR_MARGIN, embedding_coupling, margin_bias
from .saliency import shape_saliency

__all__ = ["PRIOR_MARGIN", "blend", "blend_pooled", "embedding_coupling", "margin_bias", "shape_saliency", "unit_attentions",
           "unit_product"]
