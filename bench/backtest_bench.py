"""Offline backtest cost, in process and on one core: transactions/s, split by phase.

One run over a simulated book (fixed seed), through the code ``amlwatch backtest``
runs (``stream/backtest_command.py``):

1. the history is generated; an anomaly model is trained (``models.training``, seeded)
   on the first ``--train-days`` days and activated in a temporary registry;
2. the remaining days are the backtest's file: put in event order, run through the
   rule pack (``rules.backtest.run_backtest``), then scored by the active model
   (``score_with_active_model``), as the command does.

The process is pinned to one CPU (``--cpu``, default the last one) for step 2. Phases:
``order`` (event order), ``rules``, ``features`` (scoring frame and feature matrix),
``scoring`` (the model) and ``anomalies`` (warm-up, cool-down and the alerts).
Transactions/s is over the sum of the phases, wall and CPU.

Usage: ``.venv/bin/python bench/backtest_bench.py [--customers N] [--days N] [--out PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd  # type: ignore[import-untyped]
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from core.compiled import MANIFEST as COMPILED_MANIFEST
from core.customer import Customer
from core.settings import Settings
from core.transaction import Transaction, transaction_from_mapping
from models.features import country_risk_from_lists
from models.registry import activate
from models.training import save_result, train_detector
from rules.backtest import in_event_order, run_backtest
from rules.engine import RuleEngine
from stream.backtest_command import PhaseTimes, score_with_active_model
from stream.collector import freeze_long_lived, tune_collector
from stream.detection_engine import build_rule_engine
from stream.simulator import derive_rng, generate_history, generate_reference

ROOT = Path(__file__).resolve().parents[1]
START = date(2026, 1, 1)
PHASES = ("order", "rules", "features", "scoring", "anomalies")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--train-days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "backtest.json")
    args = parser.parse_args()
    if not 0 < args.train_days < args.days:
        parser.error("--train-days must be at least 1 and less than --days")
    console = Console()
    settings = Settings()
    tz = ZoneInfo(settings.bank_timezone)
    engine = build_rule_engine(settings)

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("simulating", total=None)
        rng = derive_rng(args.seed, "backtest-bench")
        people, _ = generate_reference(
            rng, args.customers, max(1, args.customers // 25), as_of=START
        )
        history = [
            transaction_from_mapping(document)
            for document in generate_history(rng, people, start=START, days=args.days)
        ]
        customers = {person.customer_id: person for person in people}
        split = START + timedelta(days=args.train_days)
        training = [tx for tx in history if tx.timestamp.astimezone(tz).date() < split]
        file = [tx for tx in history if tx.timestamp.astimezone(tz).date() >= split]
        progress.update(task, description="training")
        registry = Path(tempfile.mkdtemp(prefix="backtest-bench-models-"))
        train_and_activate(registry, training, customers, engine, tz)

        progress.update(task, description="backtest", total=len(file), completed=0)
        os.sched_setaffinity(0, {args.cpu})
        # As the backtest command does once its file is read.
        tune_collector()
        freeze_long_lived()
        phases = PhaseTimes()
        detections = run(file, customers, engine, settings, registry, phases, progress, task)
    wall = sum(phases.wall[phase] for phase in PHASES)
    cpu = sum(phases.cpu[phase] for phase in PHASES)
    result: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "compiled": COMPILED_MANIFEST.exists(),  # per-transaction modules (setup.py)
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu": args.cpu,
            "load_average_at_end": [round(load, 2) for load in os.getloadavg()],
        },
        "seed": args.seed,
        "customers": args.customers,
        "days": args.days,
        "train_days": args.train_days,
        "training_transactions": len(training),
        "transactions": len(file),
        "pack": engine.pack.label,
        "rule_detections": detections["rules"],
        "anomaly_detections": detections["anomalies"],
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "transactions_per_second": round(len(file) / wall, 1),
        "transactions_per_cpu_second": round(len(file) / cpu, 1),
        "phases": {
            phase: {
                "wall_seconds": round(phases.wall[phase], 3),
                "cpu_seconds": round(phases.cpu[phase], 3),
                "share_of_cpu": round(phases.cpu[phase] / cpu, 3),
            }
            for phase in PHASES
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_summary(console, result)
    console.print(f"wrote {args.out}")


def train_and_activate(
    registry: Path,
    training: list[Transaction],
    customers: dict[str, Customer],
    engine: RuleEngine,
    tz: ZoneInfo,
) -> None:
    """Fit the detector on the training days (seeded) and make it the active version."""
    rates = engine.reference.rates
    frame = pd.DataFrame(
        [{**tx.to_dict(), "amount_cny": rates.to_cny(tx.amount, tx.currency)} for tx in training]
    )
    lists = engine.reference.country_lists
    risk = country_risk_from_lists(grey=lists.grey, black=lists.black)
    result = train_detector(frame, customers, risk, tz, random_state=0)
    activate(registry, save_result(result, registry).version)


def run(
    file: list[Transaction],
    customers: dict[str, Customer],
    engine: RuleEngine,
    settings: Settings,
    registry: Path,
    phases: PhaseTimes,
    progress: Progress,
    task: TaskID,
) -> dict[str, int]:
    """The backtest command's steps over ``file``, each timed as its phase."""
    with phases.measure("order"):
        ordered = in_event_order(file)
    applied = 0

    def advance() -> None:
        nonlocal applied
        applied += 1
        if applied % 5000 == 0:
            progress.update(task, completed=applied)

    with phases.measure("rules"):
        rule_detections = sum(1 for _ in run_backtest(ordered, customers, engine, advance))
    progress.update(task, description="scoring", completed=len(file))
    scored = score_with_active_model(registry, ordered, customers, engine, settings, phases)
    if scored is None:
        raise RuntimeError(f"no active model in {registry}")
    return {"rules": rule_detections, "anomalies": len(scored[1])}


def print_summary(console: Console, result: dict[str, Any]) -> None:
    """One row per phase, then the whole backtest."""
    table = Table(
        title=(
            f"Backtest of {result['transactions']:,} transactions, {result['customers']:,} "
            f"customers, on CPU {result['machine']['cpu']}"
        )
    )
    for column in ("phase", "CPU s", "share", "wall s"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for phase, figures in result["phases"].items():
        table.add_row(
            phase,
            f"{figures['cpu_seconds']:.2f}",
            f"{figures['share_of_cpu']:.0%}",
            f"{figures['wall_seconds']:.2f}",
        )
    table.add_section()
    table.add_row("total", f"{result['cpu_seconds']:.2f}", "", f"{result['wall_seconds']:.2f}")
    console.print(table)
    console.print(
        f"{result['transactions_per_second']:,.0f} tx/s, "
        f"{result['transactions_per_cpu_second']:,.0f} tx per CPU-s; "
        f"{result['rule_detections']:,} rule and {result['anomaly_detections']:,} anomaly "
        "detections"
    )


if __name__ == "__main__":
    main()
