"""PCA fitting (MEInst's matrix generation) on 1,000,000 masks of 28 x 28, against scikit-learn.

    python -m benchmarks.pca_fit [--masks 1000000] [--ipca-masks 100000]

The masks are coco-mini train2017 crops repeated with flips and shifts, held as one (N, 28, 28) bool
array. In this process, one after another, each timed and with its peak memory above what was
held before it started (resident memory sampled every millisecond):

* scikit-learn ``PCA(svd_solver="covariance_eigh")`` on the float32 logits of the masks (its best
  solver for many rows and few columns; the logit array is built beforehand, untimed);
* maskrep's ``PCACodec`` with ``jitter="none"`` (the same data as scikit-learn sees), the default
  ``"expected"`` (MEInst's jitter in expectation) and ``"sample"`` (one jitter draw, MEInst's fit);
* scikit-learn ``IncrementalPCA`` (batch 1024, MEInst's script) on the first ``--ipca-masks``.

Printed beside them, the machine's floors: reading the input once (its bytes at the measured
memory bandwidth) and the covariance product 2 N D^2 at the measured peak of a large float32
matrix product (scikit-learn's) and of an int8 product with int32 results (maskrep's).
"""

import argparse
import threading
import time

import numpy as np
import torch

from benchmarks._common import coco_mini, machine


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakMemory:
    """Peak resident memory above the level at entry, sampled every millisecond in a thread."""

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.extra_gb = (self.peak - self.base) / 1e9


def timed(fn):
    with PeakMemory() as mem:
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
    return dt, mem.extra_gb, out


def augmented(base: np.ndarray, total: int, seed: int = 0, chunk: int = 20000) -> np.ndarray:
    """(total, S, S) bool: ``base`` crops drawn at random, half flipped, each chunk shifted."""
    rng = np.random.default_rng(seed)
    out = np.empty((total, *base.shape[1:]), dtype=bool)
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        part = base[rng.integers(0, len(base), n)]
        flip = rng.random(n) < 0.5
        part[flip] = part[flip, :, ::-1]
        dy, dx = rng.integers(-2, 3, 2)
        out[start : start + n] = np.roll(part, (int(dy), int(dx)), axis=(1, 2))
    return out


def peak_rates() -> tuple[float, float, float]:
    """(float32 FLOP/s, int8 OP/s, memory read bytes/s), the best of a few large operations."""
    a32 = torch.randn(4096, 4096)
    a8 = torch.randint(0, 2, (4096, 4096), dtype=torch.int8)
    best32 = best8 = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a32 @ a32
        best32 = min(best32, time.perf_counter() - t)
        t = time.perf_counter()
        torch._int_mm(a8, a8)
        best8 = min(best8, time.perf_counter() - t)
    big = np.ones(1 << 28, dtype=np.uint8).view(np.uint64)  # 256 MB
    best_read = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.bitwise_or.reduce(big)
        best_read = min(best_read, time.perf_counter() - t)
    flops = 2 * 4096**3
    return flops / best32, flops / best8, big.nbytes / best_read


def principal_cosines(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between the row spaces of two (K, D) orthonormal bases."""
    return np.linalg.svd(c1.astype(np.float64) @ c2.astype(np.float64).T, compute_uv=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--masks", type=int, default=1_000_000)
    parser.add_argument("--ipca-masks", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=60)
    args = parser.parse_args()

    from sklearn.decomposition import PCA, IncrementalPCA

    from maskrep.codecs import PCACodec
    from maskrep.codecs.pca import MEAN_JITTER_LOGIT
    from maskrep.data import CocoInstances
    from maskrep.engine import iter_crops

    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    insts = list(CocoInstances(coco_mini() / "annotations" / "instances_train2017.json"))
    masks = augmented(np.concatenate(list(iter_crops(insts, 28))), args.masks)
    n, d = len(masks), masks.shape[1] * masks.shape[2]
    flops32, ops8, bandwidth = peak_rates()
    work = 2 * n * d * d
    print(f"{n:,} masks of 28 x 28 ({masks.nbytes / 1e9:.2f} GB as bool); peaks measured here: float32 product "
          f"{flops32 / 1e9:,.0f} GFLOP/s, int8 product {ops8 / 1e9:,.0f} GOP/s, memory read {bandwidth / 1e9:.1f} GB/s")

    t = time.perf_counter()
    logits = np.where(masks.reshape(n, d), np.float32(MEAN_JITTER_LOGIT), np.float32(-MEAN_JITTER_LOGIT))
    print(f"the float32 logit array scikit-learn needs: {logits.nbytes / 1e9:.2f} GB, built in "
          f"{time.perf_counter() - t:.1f} s (not counted below)")

    t_skl, mem_skl, skl = timed(lambda: PCA(args.dim, svd_solver="covariance_eigh").fit(logits))
    fits = {}
    for jitter in ("none", "expected", "sample"):
        fits[jitter] = timed(lambda jitter=jitter: PCACodec(mask_size=28, dim=args.dim, jitter=jitter).fit(masks))

    def line(name, seconds, extra_gb, input_gb, note=""):
        print(f"  {name:<44} {seconds:7.2f} s {n / seconds:12,.0f} masks/s   peak +{extra_gb:5.2f} GB "
              f"(input {input_gb:.2f} GB){note}")

    print(f"fit of {args.dim} components on {n:,} masks:")
    line("scikit-learn PCA(svd_solver='covariance_eigh')", t_skl, mem_skl, logits.nbytes / 1e9)
    for jitter, (seconds, extra, _) in fits.items():
        line(f"maskrep PCACodec(jitter={jitter!r})", seconds, extra, masks.nbytes / 1e9, f"   x{t_skl / seconds:.2f}")
    cos = principal_cosines(fits["none"][2].state_dict()["components"], skl.components_)
    rel = np.abs(fits["none"][2].state_dict()["explained_variance"] / skl.explained_variance_ - 1).max()
    print(f"  same data (jitter='none' vs scikit-learn): principal-angle cosines of the top {args.dim}: "
          f"min {cos.min():.6f}; explained variances within {rel:.1e} (relative)")
    cos_e = principal_cosines(fits["expected"][2].state_dict()["components"], fits["sample"][2].state_dict()["components"])
    print(f"  'expected' vs one sampled draw: principal-angle cosines min {cos_e.min():.4f}, mean {cos_e.mean():.4f}")
    print(f"floors for {n:,} masks: read the bool input once {masks.nbytes / bandwidth:.2f} s; covariance product "
          f"2 N D^2 = {work / 1e12:.2f} T at the float32 peak {work / flops32:.2f} s, at the int8 peak {work / ops8:.2f} s")

    m = min(args.ipca_masks, n)
    if m:
        t_ipca, mem_ipca, ipca = timed(lambda: IncrementalPCA(n_components=args.dim, batch_size=1024).fit(logits[:m]))
        t_ours, mem_ours, ours = timed(lambda: PCACodec(mask_size=28, dim=args.dim, jitter="none").fit(masks[:m]))
        cos = principal_cosines(ours.state_dict()["components"], ipca.components_)
        print(f"on the first {m:,} masks: scikit-learn IncrementalPCA (batch 1024) {t_ipca:.2f} s (peak +{mem_ipca:.2f} GB), "
              f"maskrep (jitter='none') {t_ours:.2f} s (peak +{mem_ours:.2f} GB), x{t_ipca / t_ours:.0f}; "
              f"IncrementalPCA's subspace: principal-angle cosines min {cos.min():.4f}, mean {cos.mean():.4f} "
              "(it approximates)")


if __name__ == "__main__":
    main()
