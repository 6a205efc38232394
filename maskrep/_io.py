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
from collections.abc import Callable

__all__ = ["atomic_write", "atomic_write_json", "remove_stale_temporaries"]


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
