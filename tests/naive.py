"""Slow plain-loop oracles: each only has to be obviously right."""

import math

import numpy as np


def point_in_polygon(x: float, y: float, vertices: np.ndarray) -> bool:
    """Even-odd ray casting to the right."""
    inside = False
    n = len(vertices)
    for k in range(n):
        xa, ya = vertices[k]
        xb, yb = vertices[(k + 1) % n]
        if (ya > y) != (yb > y):
            xc = xa + (y - ya) * (xb - xa) / (yb - ya)
            if x < xc:
                inside = not inside
    return inside


def rasterize(polygons, height, width):
    out = np.zeros((height, width), dtype=bool)
    for r in range(height):
        for c in range(width):
            out[r, c] = any(point_in_polygon(c + 0.5, r + 0.5, np.asarray(p, float).reshape(-1, 2)) for p in polygons)
    return out


def bilinear_roi(img: np.ndarray, y: float, x: float) -> float:
    """detectron2 RoIAlign bilinear read in pixel-index coordinates (docs/methods.md §8.1)."""
    h, w = img.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_lo, x_lo = int(y), int(x)
    if y_lo >= h - 1:
        y_lo = y_hi = h - 1
        y = float(y_lo)
    else:
        y_hi = y_lo + 1
    if x_lo >= w - 1:
        x_lo = x_hi = w - 1
        x = float(x_lo)
    else:
        x_hi = x_lo + 1
    ly, lx = y - y_lo, x - x_lo
    hy, hx = 1 - ly, 1 - lx
    return hy * hx * img[y_lo, x_lo] + hy * lx * img[y_lo, x_hi] + ly * hx * img[y_hi, x_lo] + ly * lx * img[y_hi, x_hi]


def roi_align_one(img, box, size, sampling_ratio=0, aligned=True):
    """One RoI of one channel, (PH, PW) float64 (docs/methods.md §8.1); ``size`` is an int or (PH, PW)."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    off = 0.5 if aligned else 0.0
    xs, ys, xe, ye = box[0] - off, box[1] - off, box[2] - off, box[3] - off
    w, h = xe - xs, ye - ys
    if not aligned:
        w, h = max(w, 1.0), max(h, 1.0)
    bw, bh = w / out_w, h / out_h
    gh = sampling_ratio if sampling_ratio > 0 else math.ceil(h / out_h)
    gw = sampling_ratio if sampling_ratio > 0 else math.ceil(w / out_w)
    out = np.zeros((out_h, out_w))
    count = max(gh * gw, 1)
    for ph in range(out_h):
        for pw in range(out_w):
            acc = 0.0
            for iy in range(gh):
                y = ys + ph * bh + (iy + 0.5) * bh / gh
                for ix in range(gw):
                    x = xs + pw * bw + (ix + 0.5) * bw / gw
                    acc += bilinear_roi(img, y, x)
            out[ph, pw] = acc / count
    return out


def paste_one(probs: np.ndarray, box, height, width):
    """Whole-image bilinear resampling with zero padding, one pixel at a time (docs/methods.md §8.4)."""
    s = probs.shape[0]
    x0, y0, x1, y1 = box
    out = np.zeros((height, width))
    for r in range(height):
        for c in range(width):
            x = (c + 0.5 - x0) * s / (x1 - x0) - 0.5
            y = (r + 0.5 - y0) * s / (y1 - y0) - 0.5
            xl, yl = math.floor(x), math.floor(y)
            v = 0.0
            for yy, wy in ((yl, 1 - (y - yl)), (yl + 1, y - yl)):
                for xx, wx in ((xl, 1 - (x - xl)), (xl + 1, x - xl)):
                    if 0 <= yy < s and 0 <= xx < s:
                        v += wy * wx * probs[yy, xx]
            out[r, c] = v
    return out


def greedy_nms(boxes, scores, labels, threshold):
    """Textbook greedy NMS, one box at a time; IoU > threshold suppresses, same label only."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # Python's sort is stable
    keep = []
    for i in order:
        ok = True
        for j in keep:
            if labels is not None and labels[i] != labels[j]:
                continue
            x0, y0 = max(boxes[i][0], boxes[j][0]), max(boxes[i][1], boxes[j][1])
            x1, y1 = min(boxes[i][2], boxes[j][2]), min(boxes[i][3], boxes[j][3])
            inter = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
            a_i = max(boxes[i][2] - boxes[i][0], 0.0) * max(boxes[i][3] - boxes[i][1], 0.0)
            a_j = max(boxes[j][2] - boxes[j][0], 0.0) * max(boxes[j][3] - boxes[j][1], 0.0)
            union = a_i + a_j - inter
            if union > 0 and inter / union > threshold:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def aligned_bilinear_transcribed(x, factor):
    """CondInst's aligned_bilinear as AdelaiDet writes it: replicate-pad right/bottom by one,
    interpolate with align_corners=True to (f h + 1, f w + 1), replicate-pad f // 2 at left/top,
    crop to (f h, f w). x: (N, C, h, w) tensor."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    x = F.pad(x, (0, 1, 0, 1), mode="replicate")
    x = F.interpolate(x, size=(factor * h + 1, factor * w + 1), mode="bilinear", align_corners=True)
    x = F.pad(x, (factor // 2, 0, factor // 2, 0), mode="replicate")
    return x[:, :, : factor * h, : factor * w]


def lovasz_hinge_loop(logits, labels):
    """One row's Lovász hinge, element by element (float64 lists)."""
    errors = [1 - z * (2 * y - 1) for z, y in zip(logits, labels)]
    order = sorted(range(len(errors)), key=lambda i: -errors[i])
    total = sum(labels)
    loss, prev_j, cum_y, cum_not = 0.0, 0.0, 0.0, 0.0
    for i in order:
        cum_y += labels[i]
        cum_not += 1 - labels[i]
        jac = 1 - (total - cum_y) / (total + cum_not)
        loss += max(errors[i], 0.0) * (jac - prev_j)
        prev_j = jac
    return loss
