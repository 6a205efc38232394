"""``maskrep predict``: a trained checkpoint on image files -> pictures with masks, and COCO JSON."""

from __future__ import annotations

import os

import numpy as np
import torch
from tqdm import tqdm

from .._io import atomic_write, atomic_write_json
from ..data.detection import collate, read_image, resize_image
from ..detection.postprocess import masks_in_image, scale_boxes
from .evaluation import detections_to_coco
from .recipe import load_model

__all__ = ["predict"]


@torch.no_grad()
def predict(checkpoint: str, inputs: list[str], output_dir: str, *, json_path: str | None = None,
            score_thresh: float = 0.3, device: str | None = None, progress: bool = True,
            annotations: str | None = None) -> tuple[list[dict], list[tuple[str, str]]]:
    """Run the checkpoint's model on each image, draw what it finds, optionally write COCO results.

    Parameters
    ----------
    checkpoint : a checkpoint written by ``maskrep train`` (it carries its config, class names
        and a mask head's codec, so nothing else is needed).
    inputs : image files.
    output_dir : one PNG per input (its file's stem; inputs of one name get -2, -3, ...), masks,
        boxes, class names and scores drawn.
    json_path : also write the detections as COCO results, each with its input's ``file_name``;
        ``image_id`` is the input's position (from 1) and ``category_id`` the training data's,
        unless ``annotations`` is given.
    score_thresh : detections below this score are neither drawn nor written.
    annotations : a COCO file the inputs belong to: each input's ``image_id`` is the id of the image
        of its file name there, and each class's ``category_id`` the id of the category of its name,
        so the results score against that file.

    Returns the COCO-format results of the images (empty without ``json_path``) and the inputs
    skipped, each with the reason: an image that cannot be read (or is too large) is skipped and
    the others go on; the JSON holds the results of the others.
    """
    from PIL import Image

    from ..viz import draw_detections

    folders = [p for p in inputs if os.path.isdir(p)]
    if folders:
        raise IsADirectoryError(f"{folders[0]} is a folder, not an image: pass the images in it (e.g. {folders[0]}/*.jpg)")
    missing = [p for p in inputs if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"input images not found: {', '.join(missing[:5])}")
    model, extra = load_model(checkpoint, no_config_hint="predict needs a checkpoint written by maskrep train")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    cfg = extra["config"]["data"]
    names = extra.get("class_names") or [str(i) for i in range(model.fcos.num_classes)]
    category_ids = extra.get("category_ids") or list(range(1, len(names) + 1))
    image_ids = list(range(1, len(inputs) + 1))
    if annotations is not None:
        image_ids, category_ids = _ids_from(annotations, inputs, names)
    os.makedirs(output_dir, exist_ok=True)
    results, skipped, seen = [], [], {}
    for index, path in enumerate(tqdm(inputs, desc="predict", disable=not progress), start=1):
        try:
            img = read_image(path)
        except (OSError, ValueError) as e:
            skipped.append((path, str(e)))
            continue
        resized = resize_image(img, cfg["min_size_test"], cfg["max_size_test"])
        arr = np.asarray(resized)
        images, _ = collate([{"image": torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))}])
        size, orig = (resized.height, resized.width), (img.height, img.width)
        det = model(images.to(device), image_sizes=[size])[0]
        keep = det["scores"] >= score_thresh
        det = {k: (v.select(keep) if k == "mask" else v[keep]) if k in ("boxes", "scores", "labels", "mask") else v
               for k, v in det.items()}
        boxes = scale_boxes(det["boxes"], size, orig)
        masks = masks_in_image(det["mask"], det["boxes"], size, orig) if "mask" in det else None
        scores, labels = det["scores"].cpu().numpy(), det["labels"].cpu().numpy()
        picture = draw_detections(np.asarray(img), boxes, masks, labels, scores, names)
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
        atomic_write(os.path.join(output_dir, f"{name}.png"), lambda f, p=picture: Image.fromarray(p).save(f, "PNG"))
        if json_path:
            target = {"size": size, "orig_size": orig, "image_id": image_ids[index - 1]}
            for res in detections_to_coco(det, target, category_ids):
                res["file_name"] = os.path.basename(path)
                results.append(res)
    if json_path:
        atomic_write_json(json_path, results)
    return results, skipped


def _ids_from(annotations: str, inputs: list[str], names: list[str]) -> tuple[list[int], list[int]]:
    """The image id of each input (by file name) and the category id of each class (by name) in a
    COCO file; what the file lacks is an error naming it."""
    import json

    try:
        with open(annotations, encoding="utf-8") as f:
            doc = json.load(f)
        by_file = {os.path.basename(im["file_name"]): im["id"] for im in doc["images"]}
        by_name = {c["name"]: c["id"] for c in doc["categories"]}
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {annotations}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{annotations}: not a COCO file with images and categories ({type(e).__name__}: {e})") from None
    unknown = [p for p in inputs if os.path.basename(p) not in by_file]
    if unknown:
        raise ValueError(f"{annotations} has no image named {os.path.basename(unknown[0])}"
                         + (f" (nor {len(unknown) - 1} more of the inputs)" if len(unknown) > 1 else ""))
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"{annotations} has no category {missing[0]!r} of the {len(names)} the model was trained on")
    return [by_file[os.path.basename(p)] for p in inputs], [by_name[n] for n in names]
