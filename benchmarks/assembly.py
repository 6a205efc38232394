"""Mask assembly at inference on the CPU: numba kernels against the torch references, one process.

    python -m benchmarks.assembly

Sizes are those of the papers' defaults: 100 detections on an 800 x 1088 input; BlendMask K=4,
M=14, R=56 bases at stride 4; CRMask K=4, m=14, k=3 units; EmbedMask D=16 at stride 8 in boxes;
CenterMask S=32 shapes on a stride-4 saliency map.
"""

import torch

from benchmarks._common import best_of, machine


def timed(fn, repeats=3):
    fn()  # compile or load from cache
    return best_of(fn, repeats)


def main() -> None:
    from maskrep.assembly import blend, embedding_coupling, shape_saliency, unit_product

    torch.manual_seed(0)
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    n, h, w = 100, 800, 1088
    xy = torch.rand(n, 2) * torch.tensor([w * 0.7, h * 0.7])
    wh = torch.rand(n, 2) * torch.tensor([w * 0.3, h * 0.3]) + 8
    boxes = torch.cat([xy, xy + wh], 1).double()
    cases = {
        "unit_product (CRMask, 4 x 14x14 per det)": lambda be: unit_product(
            u, s, v, backend=be),
        "blend (BlendMask, 56x56 per det)": lambda be: blend(bases, att, boxes, mask_size=56, backend=be),
        "embedding_coupling in boxes (EmbedMask)": lambda be: embedding_coupling(
            pix, q, phi, boxes=boxes, stride=8, backend=be),
        "shape_saliency (CenterMask)": lambda be: shape_saliency(shapes, sal, boxes, stride=4, backend=be),
    }
    u, v = torch.randn(n, 4, 14, 3).double(), torch.randn(n, 4, 14, 3).double()
    s = torch.rand(n, 4, 3).double()
    bases, att = torch.randn(1, 4, h // 4, w // 4).double(), torch.randn(n, 4, 14, 14).double()
    pix, q, phi = torch.randn(1, 16, h // 8, w // 8).double(), torch.randn(n, 16).double(), torch.rand(n, 16).double()
    shapes, sal = torch.randn(n, 32, 32).double(), torch.randn(1, 1, h // 4, w // 4).double()
    with torch.no_grad():
        for name, fn in cases.items():
            t_fast, a = timed(lambda fn=fn: fn("numba"))
            t_ref, b = timed(lambda fn=fn: fn("reference"))
            err = (a - b).abs().max().item()
            print(f"{name}: numba {n / t_fast:9,.0f} dets/s, torch {n / t_ref:9,.0f} dets/s, "
                  f"x{t_ref / t_fast:.1f}, max |diff| {err:.1e}")


if __name__ == "__main__":
    main()
