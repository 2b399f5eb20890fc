"""Extra attacks and defenses from outside the package.

A plugin is a module that registers classes with
:func:`byzstress.threats.attacks.register_attack`,
:func:`byzstress.threats.defenses.register_rule` or
:func:`byzstress.threats.defenses.register_pre` when imported. It reaches byzstress in two ways:

- named in ``plugins:`` (config.yaml, a run spec, ``byzstress train --plugins``): a module
  name (``"pkg.mod"``) or a file (``"examples/my_attack.py"``), imported once per process;
- an installed package's entry point in the group ``byzstress.attacks`` or
  ``byzstress.defenses`` (``[project.entry-points."byzstress.attacks"]`` in its
  pyproject.toml), imported the first time a name is not found in a registry.
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points
from pathlib import Path

__all__ = ["GROUPS", "load_plugins"]

#: the entry-point groups scanned for plugins
GROUPS = ("byzstress.attacks", "byzstress.defenses")

_entry_points_loaded = False
_files_loaded: set[str] = set()


def _import_file(mod: str) -> None:
    path = Path(mod).resolve()
    if str(path) in _files_loaded:
        return
    if not path.is_file():
        raise ValueError(f"plugins: file {mod!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"byzstress_plugin_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"plugins: {mod!r} is not a Python file")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    _files_loaded.add(str(path))


def load_plugins(modules: list[str] | tuple[str, ...] = ()) -> None:
    """Import ``modules`` (module names or ``.py`` files), each once per process, and, the
    first time it is called, every entry point of :data:`GROUPS`."""
    global _entry_points_loaded
    for mod in modules:
        if mod.endswith(".py"):
            _import_file(mod)
        else:
            importlib.import_module(mod)  # cached by Python itself
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for group in GROUPS:
            for ep in entry_points(group=group):
                ep.load()
