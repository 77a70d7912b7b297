"""Build step of amlwatch: compiles the per-transaction path with mypyc.

The worker and the backtest spend most of their own time in a few modules that every
transaction goes through: decoding it, the rule engine and its state, the behaviour
features and the anomaly scoring. Compiled to C by mypyc from the same, type-checked
source, the rule engine runs about 1.65x, the backtest 1.4x and the live worker 1.2x as
fast (README, Compiled modules). Everything else stays Python.

``AMLWATCH_COMPILE=0`` builds without compiling (for a debugger or a line profiler,
which cannot look inside compiled functions); it also removes the compiled modules an
earlier editable build left beside the sources, which would otherwise shadow them.

Each compiled build records the SHA-256 of the sources it compiled in
``core/compiled_sources.json``; ``core.compiled`` refuses to import a compiled module
whose source has changed since (an edit without a rebuild would otherwise run old code).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sysconfig
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "core" / "compiled_sources.json"
# mypyc puts the code of all modules into one shared library, named after this group.
GROUP = "amlwatch_native"

COMPILED_MODULES = [
    "core/calendar.py",
    "core/customer.py",
    "core/detection.py",
    "core/transaction.py",
    "models/features.py",
    "models/scoring.py",
    "rules/backtest.py",
    "rules/engine.py",
    "rules/expressions.py",
    "rules/functions.py",
    "rules/pack.py",
    "rules/reference_data.py",
    "rules/screening.py",
    "rules/state.py",
]


# mypyc compiles from mypy's types. These options make them the same in every build,
# from a checkout's virtualenv or in pip's isolated build environment, which has none of
# the dependencies: no config file (its pydantic plugin and strictness are for `make
# lint`), no installed packages (numpy, pandas and the like are Any to the compiled code,
# which calls them through Python either way), errors outside the compiled modules ignored.
_MYPY_OPTIONS = [
    "--config-file=",
    "--no-site-packages",
    "--ignore-missing-imports",
    "--follow-imports=silent",
    "--python-version=3.11",
]


def _missing_for_compiling() -> str | None:
    """What the C build lacks, said before mypyc's work rather than as a compiler error."""
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    if shutil.which(shlex.split(compiler)[0]) is None:
        return f"a C compiler ({compiler})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "Python's C headers (Python.h; Debian: python3-dev)"
    return None


def _compiled_extensions() -> list:
    missing = _missing_for_compiling()
    if missing is not None:
        raise SystemExit(
            f"amlwatch compiles its per-transaction modules with mypyc and needs {missing}: "
            "install it, or build uncompiled (and slower) with AMLWATCH_COMPILE=0"
        )
    from mypyc.build import mypycify

    MANIFEST.write_text(
        json.dumps(
            {
                path: hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
                for path in COMPILED_MODULES
            },
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )
    return mypycify([*_MYPY_OPTIONS, *COMPILED_MODULES], opt_level="3", group_name=GROUP)


def _remove_compiled_in_place() -> None:
    """What an editable compiled build left in the source tree, so the sources run."""
    MANIFEST.unlink(missing_ok=True)
    for path in [*COMPILED_MODULES, f"{GROUP}__mypyc.py"]:
        for suffix in EXTENSION_SUFFIXES:
            (ROOT / path).with_suffix(suffix).unlink(missing_ok=True)


if os.environ.get("AMLWATCH_COMPILE", "1") == "0":
    _remove_compiled_in_place()
    setup()
else:
    setup(ext_modules=_compiled_extensions())
