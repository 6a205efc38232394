"""Every tunable in one place. Read at call time, so tests may patch these values."""

import os

#: Default backend for ops that have fast paths: "auto", "reference", "numba".
DEFAULT_BACKEND = os.environ.get("MASKREP_BACKEND", "auto")

#: Threads per block for numba.cuda kernels.
CUDA_THREADS_PER_BLOCK = int(os.environ.get("MASKREP_CUDA_THREADS", "128"))

#: Minimum box side, in pixels, used when stretching a box to an S x S crop (MEInst / detectron2).
MIN_BOX_SIDE = 0.1
