"""Name -> class tables that packages extend: built-in entries written out in code, plugins found
through an entry-point group (``maskrep.codecs``, ``maskrep.heads``) of any installed distribution,
read the first time a name is looked up."""

from __future__ import annotations

import warnings


class Registry:
    """One table of named classes (``kind``: "codec" or "mask head")."""

    def __init__(self, kind: str, group: str):
        self.kind, self.group = kind, group
        self.table: dict[str, type] = {}
        self.origins: dict[str, str] = {}  # name -> the distribution of a plugin
        self._scanned = False

    def register(self, name: str, cls: type | None = None, *, origin: str | None = None):
        """Add ``cls`` under ``name`` (a taken name is refused); without ``cls``, a class decorator."""
        if cls is None:
            return lambda c: self.register(name, c, origin=origin)
        if name in self.table and self.table[name] is not cls:
            raise ValueError(f"{self.kind} {name!r} is already registered (by {self.table[name].__name__})")
        self.table[name] = cls
        if origin is not None:
            self.origins[name] = origin
        return cls

    def scan(self) -> None:
        """Register every entry point of the group not registered yet; one that fails to load is
        warned about (naming it and its package) and left out."""
        if self._scanned:
            return
        self._scanned = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            if ep.name in self.table:
                continue
            dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
            try:
                cls = ep.load()
            except Exception as e:  # noqa: BLE001  a broken plugin must not break maskrep
                warnings.warn(f"the {self.kind} plugin {ep.name!r} ({ep.value}, from {dist}) could not be loaded: "
                              f"{type(e).__name__}: {e}", stacklevel=3)
                continue
            self.register(ep.name, cls, origin=dist)

    def names(self) -> list[str]:
        self.scan()
        return sorted(self.table)

    def get(self, name: str) -> type:
        self.scan()
        try:
            return self.table[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())} (a plugin's "
                           f"{self.kind}s are found through the {self.group!r} entry-point group of its installed "
                           "package)") from None

    def origin(self, name: str) -> str | None:
        """The distribution a plugin entry came from (None for maskrep's own)."""
        return self.origins.get(name)
