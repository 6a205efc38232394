"""Files written whole or not at all.

Every file maskrep writes goes through :func:`atomic_write`: a temporary file with a unique name in
the target folder (so concurrent writers never share one), flushed and fsynced, then renamed over
the target in one step. A crash leaves the old file or the new one, never half of one; a killed
writer leaves at most a ``.<name>.*.tmp`` file, which :func:`remove_stale_temporaries` clears.
Files get the mode a plain ``open`` would give them (0666 less the umask: 0644 under 022), not the
temporary file's private 0600.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import warnings
from collections.abc import Callable

__all__ = ["atomic_write", "atomic_write_json", "read_torch_file", "remove_stale_temporaries"]


def atomic_write(path: str | os.PathLike, write: Callable, *, binary: bool = True) -> None:
    """Call ``write(file)`` on a fresh temporary file beside ``path``, then rename it over ``path``.

    The folder is created when missing. On any error the temporary file is removed and the error
    propagates; ``path`` keeps its old contents.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".{os.getpid()}.tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj, **dump_kwargs) -> None:
    """``obj`` as strict JSON (NaN and infinities refused), written atomically."""
    text = json.dumps(obj, allow_nan=False, **dump_kwargs)
    atomic_write(path, lambda f: f.write(text), binary=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Remove the temporary files of writers that are no longer running; returns what was removed."""
    removed = []
    for tmp in glob.glob(os.path.join(os.fspath(folder), ".*.tmp")):
        try:
            pid = int(tmp.rsplit(".", 2)[-2])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            os.remove(tmp)
            removed.append(tmp)
    return removed


def read_torch_file(path: str | os.PathLike, *, what: str = "checkpoint", advice: str = ""):
    """What ``torch.save`` wrote to ``path``, read with ``weights_only=True`` (no code in it runs).

    Anything else is one ``ValueError`` line naming the file and why: empty, truncated, not a torch
    file (an ``.npz``, text), or holding Python objects beyond tensors and plain containers (a
    pickled payload, never executed); then ``advice``.
    """
    import torch

    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, not a {what} file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    tail = f"; {advice}" if advice else ""
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: not a readable {what} (the file is empty){tail}")
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol is no news to a user
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  truncated, not torch's, code, or bytes the unpickler trips on
        text = str(e).strip()
        if "Weights only load failed" in text:
            reason = "it holds Python objects other than tensors, which are never run"
        elif "zip archive" in text or "central directory" in text or "PytorchStreamReader" in text:
            reason = "not a torch file, or a truncated one"
        else:
            reason = f"{type(e).__name__}: {text.splitlines()[0][:160]}" if text else type(e).__name__
        raise ValueError(f"{path}: not a readable {what} ({reason}){tail}") from None

