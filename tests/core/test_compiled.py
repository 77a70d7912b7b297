"""The compiled per-transaction modules: what runs is what the sources say."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from core.compiled import MANIFEST, StaleCompiledModule, check_compiled, compiled_modules
from tests.alerts.conftest import customer, detection

SOURCE = "def answer() -> int:\n    return 42\n"


def _package(root: Path, *, compiled: bool = True) -> Path:
    """``root/pkg`` with ``mod.py``, its compiled module if ``compiled``, and a manifest."""
    package = root / "pkg"
    package.mkdir()
    (package / "mod.py").write_text(SOURCE)
    (package / "plain.py").write_text(SOURCE)
    if compiled:
        (package / "mod").with_suffix(EXTENSION_SUFFIXES[0]).write_bytes(b"")
    (root / "core").mkdir()
    return package


def _record(root: Path, sources: dict[str, str]) -> Path:
    manifest = root / "core" / "compiled_sources.json"
    digests = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in sources.items()}
    manifest.write_text(json.dumps(digests))
    return manifest


def test_a_compiled_module_built_from_its_source_as_it_is_imports(tmp_path: Path) -> None:
    package = _package(tmp_path)
    manifest = _record(tmp_path, {"pkg/mod.py": SOURCE})
    assert compiled_modules(package) == [package / "mod.py"]
    check_compiled(package, manifest=manifest)


def test_an_edited_source_stops_the_import_with_what_to_do(tmp_path: Path) -> None:
    package = _package(tmp_path)
    manifest = _record(tmp_path, {"pkg/mod.py": SOURCE})
    (package / "mod.py").write_text(SOURCE.replace("42", "43"))
    with pytest.raises(StaleCompiledModule, match=r"pkg/mod\.py has changed.*make build"):
        check_compiled(package, manifest=manifest)


def test_a_compiled_module_no_build_recorded_stops_the_import(tmp_path: Path) -> None:
    package = _package(tmp_path)
    with pytest.raises(StaleCompiledModule, match="no build recorded it"):
        check_compiled(package, manifest=tmp_path / "core" / "compiled_sources.json")


def test_sources_without_compiled_modules_need_no_manifest(tmp_path: Path) -> None:
    package = _package(tmp_path, compiled=False)
    check_compiled(package, manifest=tmp_path / "core" / "compiled_sources.json")


def test_the_installed_build_runs_the_compiled_modules() -> None:
    """What the tests exercise is what the worker runs: the build compiled every listed
    module and Python imports the compiled one (unless built with AMLWATCH_COMPILE=0)."""
    if os.environ.get("AMLWATCH_COMPILE") == "0":
        pytest.skip("built uncompiled (AMLWATCH_COMPILE=0)")
    if not MANIFEST.exists():
        pytest.fail(f"no compiled build ({MANIFEST} is missing): `make build` compiles")
    recorded = json.loads(MANIFEST.read_text())
    assert "rules/engine.py" in recorded and "models/features.py" in recorded
    for source in recorded:
        module = importlib.import_module(source.removesuffix(".py").replace("/", "."))
        assert module.__file__ is not None
        assert module.__file__.endswith(tuple(EXTENSION_SUFFIXES)), module.__file__


def test_customers_and_detections_survive_pickling() -> None:
    # The memory bench hands customers to its simulating processes by pickle.
    for record in (customer("C1", "M1"), detection("C1", "t1")):
        assert pickle.loads(pickle.dumps(record)) == record
