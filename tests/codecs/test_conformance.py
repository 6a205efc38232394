"""Every registered codec, the moment it is registered: shapes, kinds, determinism, persistence."""

import numpy as np
import pytest

from maskrep.codecs import get_codec, list_codecs
from maskrep.testing import CODEC_CHECKS

SMALL = {"bitmap": {"mask_size": 12, "resolution": 6}, "dct": {"mask_size": 12, "dim": 20},
         "contour": {"mask_size": 12, "dim": 16}, "polar": {"mask_size": 12, "rays": 16},
         "learned": {"mask_size": 12, "dim": 8, "width": 8, "epochs": 40, "batch_size": 50, "lr": 5e-3},
         "pca": {"mask_size": 12, "dim": 10}, "svd": {"mask_size": 12, "rank": 3}}


from maskrep.testing import disc_masks as _masks

_FITTED: dict = {}


@pytest.fixture(params=list_codecs())
def codec(request):
    """Each codec built (and fitted) once for the module; tests only read it."""
    name = request.param
    if name not in _FITTED:
        c = get_codec(name, **SMALL.get(name, {}))
        if c.needs_fit:
            c.fit(_masks(300, c.mask_size, seed=1))
        _FITTED[name] = c
    return _FITTED[name]


def test_every_codec_has_small_params():
    assert set(list_codecs()) <= set(SMALL), "add small test parameters for the new codec"


@pytest.mark.parametrize("check", CODEC_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_conformance(codec, check, tmp_path):
    """maskrep.testing's checks, the ones plugin codecs run too."""
    check(codec, tmp_path)


def test_registry_miss_lists_names():
    with pytest.raises(KeyError, match="unknown codec 'pcaa'; valid names: bitmap, contour, dct, learned, pca, polar, svd"):
        get_codec("pcaa")


def test_unfitted_codec_refuses():
    with pytest.raises(RuntimeError, match="must be fitted"):
        get_codec("pca", mask_size=8, dim=4).encode(np.zeros((1, 8, 8), bool))
