"""Refuses to run compiled modules whose source has changed since they were compiled.

``setup.py`` compiles the per-transaction modules with mypyc; an editable install puts
the compiled modules beside their sources, and Python imports a compiled module before
a ``.py`` of the same name. An edit without a rebuild would then run the old code,
tests included, with no sign of it. Each package with compiled modules calls
:func:`check_compiled` from its ``__init__``, which Python runs before any of its
modules: a compiled module whose source no longer has the SHA-256 recorded at its
build stops the import with what to do. This module itself is never compiled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).with_name("compiled_sources.json")
REBUILD = "run `make build` (or `AMLWATCH_COMPILE=0 make build` to run the sources uncompiled)"


class StaleCompiledModule(ImportError):
    """A compiled module beside a source that has changed since it was compiled."""


def compiled_modules(package_dir: Path) -> list[Path]:
    """The sources in ``package_dir`` that have a compiled module beside them."""
    return sorted(
        source
        for source in package_dir.glob("*.py")
        if any(source.with_suffix(suffix).exists() for suffix in EXTENSION_SUFFIXES)
    )


def check_compiled(package_dir: Path | str, *, manifest: Path = MANIFEST) -> None:
    """Raise :class:`StaleCompiledModule` unless every compiled module in ``package_dir``
    was compiled from its source as it is now."""
    package_dir = Path(package_dir)
    sources = compiled_modules(package_dir)
    if not sources:
        return
    try:
        recorded: dict[str, str] = json.loads(manifest.read_text())
    except FileNotFoundError:
        raise StaleCompiledModule(
            f"{sources[0]} has a compiled module but no build recorded it ({manifest} is "
            f"missing): {REBUILD}"
        ) from None
    root = manifest.parent.parent  # the manifest names sources from beside the packages
    for source in sources:
        name = source.relative_to(root).as_posix()
        if recorded.get(name) != hashlib.sha256(source.read_bytes()).hexdigest():
            raise StaleCompiledModule(
                f"{name} has changed since it was compiled, and Python would run the "
                f"compiled old version: {REBUILD}"
            )


def reduced_through_init(record: Any) -> tuple[type, tuple[Any, ...]]:
    """``__reduce__`` for a dataclass that may be compiled: rebuilt by its ``__init__``.

    Compiled, its default unpickling assigns the fields one by one, which a frozen
    dataclass refuses (``FrozenInstanceError``), and makes the object without the
    arguments a written-out ``__init__`` needs. Every field that is an ``__init__``
    argument (``init=True``) must be one in field order; the others are left to it.
    """
    arguments = tuple(getattr(record, item.name) for item in fields(record) if item.init)
    return type(record), arguments
