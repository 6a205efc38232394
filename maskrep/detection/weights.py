"""Published backbone weights by name: ``torchvision://resnet50`` is downloaded once into a cache and
checked against the hash its file name carries.

    >>> weights_url("torchvision://resnet50")
    'https://download.pytorch.org/models/resnet50-0676ba61.pth'
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request

__all__ = ["TORCHVISION_RESNETS", "cache_dir", "resolve_weights", "weights_url"]

#: torchvision's ImageNet weights of each ResNet (IMAGENET1K_V1): the first 8 hex digits after the
#: dash are the start of the file's SHA-256, torchvision's own check.
TORCHVISION_RESNETS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}
SCHEME = "torchvision://"


def cache_dir() -> str:
    """``$MASKREP_CACHE``, else ``$XDG_CACHE_HOME/maskrep``, else ``~/.cache/maskrep``."""
    if os.environ.get("MASKREP_CACHE"):
        return os.environ["MASKREP_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "maskrep")


def weights_url(spec: str) -> str:
    name = spec[len(SCHEME):]
    if name not in TORCHVISION_RESNETS:
        raise ValueError(f"unknown weights {spec!r}; valid: {', '.join(SCHEME + n for n in TORCHVISION_RESNETS)}")
    return TORCHVISION_RESNETS[name]


def _check_hash(path: str, url: str) -> None:
    expected = os.path.splitext(os.path.basename(url))[0].rsplit("-", 1)[-1]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(expected):
        raise ValueError(f"{path}: its SHA-256 starts {digest.hexdigest()[:8]}, not {expected} as {url} says; "
                         "remove the file and download it again")


def resolve_weights(spec: str | os.PathLike) -> str:
    """A local file for ``spec``: a path as it is, or ``torchvision://<resnet>`` from the cache
    (``cache_dir()/weights``), downloaded there once and checked against its hash. Offline, a
    missing file is an error naming the URL and the path to put the file at."""
    spec = os.fspath(spec)
    if not spec.startswith(SCHEME):
        return spec
    url = weights_url(spec)
    path = os.path.join(cache_dir(), "weights", os.path.basename(url))
    if not os.path.exists(path):
        from tqdm import tqdm

        from .._io import atomic_write

        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0)
                with tqdm(total=total or None, unit="B", unit_scale=True, desc=f"download {os.path.basename(url)}") as bar:
                    def copy(f):
                        for block in iter(lambda: response.read(1 << 20), b""):
                            f.write(block)
                            bar.update(len(block))

                    atomic_write(path, copy)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise FileNotFoundError(f"cannot download {url} ({reason}); put the file at {path} "
                                    "(or set MASKREP_CACHE to the folder whose weights/ holds it)") from None
    _check_hash(path, url)
    return path
