"""PCA fitting: peak memory on 1,000,000 masks of 28 x 28, and speed against scikit-learn.

    python -m benchmarks.pca_fit [--masks 1000000] [--compare 100000]

The masks are coco-mini train2017 crops repeated with flips and shifts, generated chunk by chunk.
Prints peak resident memory after the streaming fit, then times maskrep's exact fit and
scikit-learn's IncrementalPCA (batch 1024, as MEInst's script) on the same masks in this process,
with the ratio, and how close their subspaces are.
"""

import argparse
import time

import numpy as np

from benchmarks._common import coco_mini, machine, peak_rss_mb


def augmented_chunks(base: np.ndarray, total: int, chunk: int = 20000, seed: int = 0):
    """Yield (n, S, S) bool chunks: ``base`` flipped and shifted, ``total`` masks in all."""
    rng = np.random.default_rng(seed)
    made = 0
    while made < total:
        n = min(chunk, total - made)
        idx = rng.integers(0, len(base), n)
        out = base[idx]
        flip = rng.random(n) < 0.5
        out[flip] = out[flip, :, ::-1]
        dy, dx = rng.integers(-2, 3, 2)
        out = np.roll(out, (int(dy), int(dx)), axis=(1, 2))
        made += n
        yield out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--masks", type=int, default=1_000_000)
    parser.add_argument("--compare", type=int, default=100_000)
    args = parser.parse_args()

    from maskrep.codecs import PCACodec
    from maskrep.data import CocoInstances
    from maskrep.engine import iter_crops

    insts = list(CocoInstances(coco_mini() / "annotations" / "instances_train2017.json"))
    base = np.concatenate(list(iter_crops(insts, 28)))
    print(f"machine: {machine()}")
    print(f"base crops: {base.shape}, peak RSS before fitting: {peak_rss_mb():.0f} MB")

    t = time.perf_counter()
    PCACodec(mask_size=28, dim=60).fit(augmented_chunks(base, args.masks))
    dt = time.perf_counter() - t
    print(f"pca fit on {args.masks:,} masks: {dt:.1f} s ({args.masks / dt:,.0f} masks/s), "
          f"peak RSS {peak_rss_mb():.0f} MB")

    from sklearn.decomposition import IncrementalPCA


    masks = np.concatenate(list(augmented_chunks(base, args.compare, seed=1)))
    t = time.perf_counter()
    ours = PCACodec(mask_size=28, dim=60, jitter=False).fit(masks)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    x = np.where(masks.reshape(len(masks), -1), np.float32(3.7), np.float32(-3.7))  # the same logits
    ipca = IncrementalPCA(n_components=60, batch_size=1024).fit(x)
    t_skl = time.perf_counter() - t
    comps = ours.state_dict()["components"].astype(np.float64)
    overlap = np.linalg.svd(comps @ ipca.components_.T, compute_uv=False)
    print(f"fit on the same {args.compare:,} masks: maskrep {t_ours:.2f} s, IncrementalPCA {t_skl:.2f} s, "
          f"speed-up x{t_skl / t_ours:.1f}")
    print(f"subspace agreement (singular values of C_ours C_skl^T): min {overlap.min():.4f}, mean {overlap.mean():.4f}")


if __name__ == "__main__":
    main()
