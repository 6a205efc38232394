"""Jobs over data: codec fitting and reconstruction evaluation."""

from .reconstruction import (
    evaluate_reconstruction,
    fit_codec,
    fit_or_load,
    format_table,
    iter_crops,
    parse_codec_spec,
    plot_rate_distortion,
    run_grid,
)

__all__ = ["evaluate_reconstruction", "fit_codec", "fit_or_load", "format_table", "iter_crops", "parse_codec_spec",
           "plot_rate_distortion", "run_grid"]
