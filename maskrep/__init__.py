"""maskrep: instance-mask representations for one-stage instance segmentation.

Importing the package is cheap: submodules (``maskrep.ops``, ``maskrep.data``, ``maskrep.codecs``)
are imported on first use.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "assembly", "codecs", "data", "detection", "engine", "ops"]

#: the subpackages ``maskrep.<name>`` serves on first use: every name of ``__all__`` but the version
SUBPACKAGES = tuple(name for name in __all__ if name != "__version__")


def __getattr__(name: str):
    if name in SUBPACKAGES:
        import importlib

        return importlib.import_module(f"maskrep.{name}")
    raise AttributeError(f"module 'maskrep' has no attribute {name!r}")
