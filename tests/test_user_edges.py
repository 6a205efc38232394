"""What trips a new user: training and the command line as a user expects them, and bad input that
must be refused in one line."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from maskrep.cli import main

TINY = str(Path(__file__).resolve().parents[1] / "experiments" / "fcos" / "fcos_tiny.py")


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_take_the_umasks_mode(tmp_path, umask, mode):
    from maskrep._io import atomic_write_json
    from maskrep.codecs import get_codec

    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
        codec = get_codec("svd", mask_size=6, rank=2)
        codec.save(tmp_path / "c.npz")
    finally:
        os.umask(old)
    for name in ("r.json", "c.npz"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name
