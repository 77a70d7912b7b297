"""Instructions a transaction of the stream bench's in-process replay, counted by callgrind.

The development machine's speed swings by tens of percent within minutes, so a change of
a few percent to the worker's own per-transaction code cannot be seen in seconds. This
counts instructions instead: valgrind's callgrind counts every instruction the process
executes, and the count of the same code on the same input comes out the same from run
to run (to 0.01% here) whatever else the machine is doing. Instructions are not time (a
numpy gather and a dict lookup differ in instructions per cycle), so confirm a change
with the stream bench, and read the per-function counts in the output file with
``callgrind_annotate --inclusive=yes FILE``.

The replay is ``stream_bench.in_process_work`` on the stream bench's workload (the same
seed and sizes): decoding, rules and features, scoring, record encoding. Everything
before transaction ``--start`` (building the workload, importing, the customers' first
transactions) runs without instrumentation (``--instr-atstart=no``, about 5x slower than
natively instead of 50x); the count covers ``count`` transactions from the first of the
replay's batch (400) that ``start`` falls in. It needs valgrind, gcc and valgrind's header
``valgrind/callgrind.h`` (to build the one-line start and stop calls, at run time).

Run: ``.venv/bin/python bench/replay_instructions.py [--start N] [--count N] [--out PATH]``
(about 90 s with the defaults; not part of ``make bench``).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stream_bench import (
    IN_PROCESS_BATCH,
    REPO_ROOT,
    BenchError,
    add_population_options,
    build_live_workload,
    check_workload_options,
    code_state,
    console,
    in_process_work,
    machine_facts,
    measure_and_write,
)

from core.settings import DEFAULT_DECODED_RECORDS_KEPT

DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "replay_instructions.json"
# Set in the child that valgrind runs: where to find the start and stop calls.
CONTROL_LIBRARY_ENV = "AMLWATCH_CALLGRIND_CONTROL"
_CONTROL_SOURCE = """
#include <valgrind/callgrind.h>
void amlwatch_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void amlwatch_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_population_options(parser)  # the stream bench's workload, by default
    parser.add_argument(
        "--start",
        type=int,
        default=16_000,
        help="first counted transaction, rounded down to a batch (default: past most "
        "customers' warm-up, so that the count includes scoring)",
    )
    parser.add_argument("--count", type=int, default=4_000, help="transactions counted")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    check_workload_options(parser, args)
    if args.start < 0 or args.count < 1:
        parser.error("--start must be at least 0 and --count at least 1")
    args.start -= args.start % IN_PROCESS_BATCH
    return args


def build_control_library(directory: Path) -> Path:
    """The shared library whose two functions start and stop callgrind's count."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise BenchError("no C compiler (gcc) to build the callgrind calls")
    source, library = directory / "control.c", directory / "control.so"
    source.write_text(_CONTROL_SOURCE)
    built = subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        raise BenchError(
            "could not build the callgrind calls (is valgrind's header valgrind/callgrind.h "
            f"installed?): {built.stderr.strip()}"
        )
    return library


def count_instructions(args: argparse.Namespace) -> dict[str, Any]:
    """Run this script's replay under callgrind; the counted instructions and timings."""
    if shutil.which("valgrind") is None:
        raise BenchError("valgrind is not installed")
    with tempfile.TemporaryDirectory(prefix="replay-instructions-") as scratch:
        directory = Path(scratch)
        library = build_control_library(directory)
        counts, timings = directory / "callgrind.out", directory / "timings.json"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={counts}",
            sys.executable,
            __file__,
            "--replay-into",
            str(timings),
            *_replay_options(args),
        ]
        # Same string hashes in every run: dict and set layouts, hence instructions, alike.
        env = {**os.environ, CONTROL_LIBRARY_ENV: str(library), "PYTHONHASHSEED": "0"}
        began = time.monotonic()
        with console.status("replaying under callgrind (about 90 s with the defaults)"):
            run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if run.returncode != 0 or not timings.exists():
            raise BenchError(f"the replay under valgrind failed:\n{run.stderr[-3000:]}")
        instructions = _total_instructions(counts)
        kept_counts = args.out.with_suffix(".callgrind")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(counts, kept_counts)
        replay = json.loads(timings.read_text())
    counted = replay["counted_transactions"]
    return {
        "machine": machine_facts(),
        "code": code_state(),
        "parameters": {
            "customers": args.customers,
            "days": args.days,
            "training_days": args.training_days,
            "seed": args.seed,
            "start": args.start,
            "count": args.count,
            "batch": IN_PROCESS_BATCH,
        },
        "counted_transactions": counted,
        "instructions": instructions,
        "instructions_per_transaction": round(instructions / counted),
        "callgrind_file": str(kept_counts),
        "wall_seconds": round(time.monotonic() - began, 1),
    }


def _replay_options(args: argparse.Namespace) -> list[str]:
    return [
        f"--customers={args.customers}",
        f"--days={args.days}",
        f"--training-days={args.training_days}",
        f"--seed={args.seed}",
        f"--start={args.start}",
        f"--count={args.count}",
    ]


def _total_instructions(counts: Path) -> int:
    for line in counts.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise BenchError(f"no totals in {counts}")


def replay_under_callgrind(args: argparse.Namespace, timings: Path) -> None:
    """The child's part: the replay, counted from ``start`` for ``count`` transactions."""
    control = ctypes.CDLL(os.environ[CONTROL_LIBRARY_ENV])
    end = args.start + args.count
    with tempfile.TemporaryDirectory(prefix="replay-instructions-work-") as work:
        workload = build_live_workload(
            Path(work),
            customers=args.customers,
            days=args.days,
            training_days=args.training_days,
            seed=args.seed,
        )
        if args.start >= len(workload.records):
            raise SystemExit(f"--start {args.start} is past the {len(workload.records)} records")
        records = workload.records[:end]
        workload = dataclasses.replace(workload, records=records)

        def before_batch(first: int) -> None:
            if first == args.start:
                control.amlwatch_start()

        in_process_work(
            workload,
            floor=False,
            decoded_kept=DEFAULT_DECODED_RECORDS_KEPT,
            before_batch=before_batch,
        )
        control.amlwatch_stop()
    timings.write_text(json.dumps({"counted_transactions": len(records) - args.start}))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--replay-into"]:
        replay_under_callgrind(parse_args(argv[2:]), Path(argv[1]))
        return 0
    args = parse_args(argv)

    def summary(result: dict[str, Any]) -> None:
        console.print(
            f"{result['counted_transactions']:,} transactions from {args.start:,}: "
            f"{result['instructions']:,} instructions, "
            f"{result['instructions_per_transaction']:,} a transaction"
        )

    return measure_and_write(lambda: count_instructions(args), args.out, summary)


if __name__ == "__main__":
    raise SystemExit(main())
