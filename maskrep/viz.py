"""Pictures people would rather look at than read. matplotlib is imported inside functions."""

from __future__ import annotations

import numpy as np


def overlay_instances(image: np.ndarray, masks: np.ndarray, boxes: np.ndarray | None = None, *, alpha: float = 0.5,
                      seed: int = 0) -> np.ndarray:
    """Colour each of ``masks`` (N, H, W) bool over ``image`` (H, W, 3) uint8; boxes (N, 4) xyxy outlined.

    Returns (H, W, 3) uint8.
    """
    rng = np.random.default_rng(seed)
    out = image.astype(np.float64).copy()
    for k, m in enumerate(masks):
        colour = rng.uniform(40, 255, 3)
        out[m] = (1 - alpha) * out[m] + alpha * colour
        if boxes is not None:
            x0, y0, x1, y1 = np.round(boxes[k]).astype(int)
            h, w = m.shape
            x0, x1 = np.clip([x0, x1 - 1], 0, w - 1)
            y0, y1 = np.clip([y0, y1 - 1], 0, h - 1)
            out[y0:y1 + 1, [x0, x1]] = colour
            out[[y0, y1], x0:x1 + 1] = colour
    return out.clip(0, 255).astype(np.uint8)


def save_grid(images: list[np.ndarray], path: str, *, titles: list[str] | None = None, columns: int = 3) -> None:
    """Save images (each (H, W, 3) uint8 or (H, W) float/bool) as one PNG grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(images) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, img in enumerate(images):
        ax = axes.ravel()[k]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        if titles:
            ax.set_title(titles[k], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
