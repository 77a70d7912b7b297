"""The compiled per-transaction modules: what runs is what the sources say."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import pickle
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from core.compiled import MANIFEST, StaleCompiledModule, check_compiled, compiled_modules
from core.settings import Settings
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


def test_written_out_dataclass_inits_take_and_set_every_field() -> None:
    # mypyc leaves a dataclass's generated __init__ interpreted, so the per-transaction
    # records write theirs out: each must take every init field by its name and leave no
    # field unset.
    from datetime import UTC, datetime
    from decimal import Decimal

    from core.transaction import Channel, Direction, Transaction
    from rules.engine import ProcessResult
    from rules.expressions import EvalContext
    from rules.state import CustomerState, DailyTotals, TxEvent
    from stream.detection_engine import build_rule_engine

    moment = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    tx = Transaction(
        tx_id="T1",
        timestamp=moment,
        customer_id="C1",
        account_id="A1",
        direction=Direction.OUT,
        amount=Decimal("12.30"),
        currency="CNY",
        channel=Channel.WIRE,
        counterparty_id="P1",
        counterparty_name="Acme",
        counterparty_country="HK",
        description="rent",
        extra={"branch": "7"},
    )
    event = TxEvent(
        tx_id="T1",
        at=moment.timestamp(),
        day=moment.toordinal(),
        direction=Direction.OUT,
        channel=Channel.WIRE,
        currency="CNY",
        amount_cny=Decimal("12.30"),
        amount_usd=Decimal("1.70"),
        counterparty="P1",
        country="HK",
        cross_border=True,
    )
    context = EvalContext(
        tx=tx,
        event=event,
        customer=None,
        state=CustomerState(),
        reference=build_rule_engine(Settings()).reference,
        previous_event_at=None,
        local_time=moment,
    )
    made = (
        tx,
        event,
        context,
        ProcessResult(detections=(), duplicate=True),
        DailyTotals(fen_in=5, fen_out=7),
    )
    for record in made:
        for item in dataclasses.fields(record):
            getattr(record, item.name)  # AttributeError if the __init__ left it unset
    assert dataclasses.astuple(tx)[-1] == {"branch": "7"}
    assert event.encoded is None and context.values == {} and context.touched == []
    plain = Transaction("T2", moment, "C1", "A1", Direction.IN, Decimal(1), "CNY", Channel.CASH)
    assert plain.extra == {} and plain.counterparty_id is None
    assert dataclasses.replace(tx, amount=Decimal(1)).amount == Decimal(1)
    assert pickle.loads(pickle.dumps(event)) == event
    with pytest.raises(dataclasses.FrozenInstanceError):
        tx.amount = Decimal(0)  # type: ignore[misc]
