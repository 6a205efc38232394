# maskrep: `make test` and `make demo` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned: on these machines the pin resolves to a local CPU wheel,
# while an unpinned torch pulls a multi-GB CUDA build. Override on a GPU machine, for example
#   make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.maskrep-installed
DEMO_OUT ?= outputs/demo
PYTEST_ARGS ?=

.PHONY: install test test-fast test-nojit test-cudasim demo bench lint clean gpu-check gpu-dry-run gpu-pack

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(STAMP)

# The whole suite; the whole suite again without the JIT (kernels as plain Python); the numba.cuda
# kernels in the CUDA simulator.
test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-nojit
	$(MAKE) --no-print-directory test-cudasim


test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-nojit: install
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-cudasim: install
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q -m cuda -p no:cacheprovider $(PYTEST_ARGS)

demo: install
	$(BIN)/maskrep demo --out $(DEMO_OUT)

bench: install
	$(BIN)/python -m benchmarks.compile_time
	$(BIN)/python -m benchmarks.paste
	$(BIN)/python -m benchmarks.rasterize
	$(BIN)/python -m benchmarks.iou
	$(BIN)/python -m benchmarks.rle
	$(BIN)/python -m benchmarks.assembly
	$(BIN)/python -m benchmarks.pca_fit

# Every GPU figure in one run (docs/gpu.md): on a CUDA machine with this venv; its dry run on the CPU;
# the data, PCA matrix and wheels a GPU machine without a network needs, packed here.
gpu-check: install
	$(BIN)/python -m benchmarks.gpu --out outputs/gpu

gpu-dry-run: install
	$(BIN)/python -m benchmarks.gpu --dry-run --out outputs/gpu-dry-run

gpu-pack: install
	$(BIN)/python -m benchmarks.gpu --pack outputs/gpu_pack --wheels wheels

lint: install
	$(BIN)/ruff check maskrep tests benchmarks experiments

clean:
	rm -rf $(VENV) outputs .pytest_cache
