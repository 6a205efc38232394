import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """coco-mini's parent: $MASKREP_DATASETS, else ../shared/data beside the checkout."""
    return Path(os.environ.get("MASKREP_DATASETS", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    root = data_root() / "coco-mini"
    if not (root / "annotations" / "instances_val2017.json").is_file():
        message = f"coco-mini not found at {root} (set MASKREP_DATASETS to the folder holding coco-mini)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def coco_val(coco_mini):
    from maskrep.data import CocoInstances

    data = CocoInstances(coco_mini / "annotations" / "instances_val2017.json", image_dir=coco_mini / "val2017")
    return data, list(data)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A small synthetic train/val data set, written once per session."""
    from maskrep.data.synthetic import make_synthetic_splits

    out = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_splits(out, num_train=12, num_val=6, seed=0)
