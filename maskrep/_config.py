"""Every tunable in one place. Read at call time, so tests may patch these values."""

import os

#: Default backend for ops that have fast paths: "auto", "reference", "numba", "cuda".
DEFAULT_BACKEND = os.environ.get("MASKREP_BACKEND", "auto")

#: Threads per block (x: columns, y: rows) for the numba.cuda kernels, which run one thread per pixel.
CUDA_THREADS_PER_BLOCK = (32, int(os.environ.get("MASKREP_CUDA_ROWS_PER_BLOCK", "4")))

#: Minimum box side, in pixels, used when stretching a box to an S x S crop (MEInst / detectron2).
MIN_BOX_SIDE = 0.1
