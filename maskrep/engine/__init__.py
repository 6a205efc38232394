"""Jobs over data: codec fitting and reconstruction evaluation."""

from .reconstruction import evaluate_reconstruction, fit_codec, iter_crops, parse_codec_spec

__all__ = ["evaluate_reconstruction", "fit_codec", "iter_crops", "parse_codec_spec"]
