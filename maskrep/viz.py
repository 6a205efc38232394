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


def draw_detections(image: np.ndarray, boxes: np.ndarray, masks: np.ndarray | None, labels, scores,
                    class_names: list[str], *, alpha: float = 0.45) -> np.ndarray:
    """Masks, boxes, class names and scores drawn over ``image`` (H, W, 3) uint8 -> (H, W, 3) uint8.

    boxes (n, 4) xyxy and masks (n, H, W) bool in the image's frame; each detection keeps one
    colour for its mask, box and label.
    """
    from PIL import Image, ImageDraw

    n = len(boxes)
    colours = [tuple(int(v) for v in c) for c in np.random.default_rng(0).uniform(40, 255, (max(n, 1), 3))]
    out = image.astype(np.float64).copy()
    if masks is not None:
        for k in range(n):
            out[masks[k]] = (1 - alpha) * out[masks[k]] + alpha * np.array(colours[k])
    canvas = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for k in range(n):
        x0, y0, x1, y1 = (float(v) for v in boxes[k])
        draw.rectangle([x0, y0, x1, y1], outline=colours[k], width=2)
        text = f"{class_names[int(labels[k])]} {float(scores[k]):.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), text)
        y_text = max(y0 - (bottom - top) - 2, 0)
        draw.rectangle([x0, y_text, x0 + (right - left) + 4, y_text + (bottom - top) + 2], fill=colours[k])
        draw.text((x0 + 2, y_text), text, fill=(0, 0, 0))
    return np.asarray(canvas)
