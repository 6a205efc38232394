"""Every tunable in one place. Read at call time, so tests may patch these values."""

import os

#: Default backend for ops that have fast paths: "auto", "reference", "numba", "cuda".
DEFAULT_BACKEND = os.environ.get("MASKREP_BACKEND", "auto")

#: Threads per block (x: columns, y: rows) for the numba.cuda kernels, which run one thread per pixel.
CUDA_THREADS_PER_BLOCK = (32, int(os.environ.get("MASKREP_CUDA_ROWS_PER_BLOCK", "4")))

#: Minimum box side, in pixels, used when stretching a box to an S x S crop (MEInst / detectron2).
MIN_BOX_SIDE = 0.1

#: The most pixels one image may have (height x width) before maskrep refuses it: a typo such as
#: 100000 x 100000 in an annotation file would otherwise ask for tens of GiB. 2**28 is 16384 x 16384.
MAX_IMAGE_PIXELS = int(os.environ.get("MASKREP_MAX_IMAGE_PIXELS", str(2**28)))
