"""maskrep: instance-mask representations for one-stage instance segmentation.

Importing the package is cheap: submodules (``maskrep.ops``, ``maskrep.data``, ``maskrep.codecs``)
are imported on first use.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "codecs", "data", "ops"]


def __getattr__(name: str):
    if name in ("ops", "data", "codecs", "assembly", "detection", "engine"):
        import importlib

        return importlib.import_module(f"maskrep.{name}")
    raise AttributeError(f"module 'maskrep' has no attribute {name!r}")
