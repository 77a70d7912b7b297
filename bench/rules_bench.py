"""Rules evaluation cost, in process: transactions/s through state update + the full pack.

Both figures come from one run over the same simulated history (fixed seed), applied
in event order exactly as the backtest does:

- ``state_only``: the engine with an empty pack (conversion, state update, expiry);
- ``full_pack``: the engine with the packaged pboc pack;
- ``state_json``: each customer's rules state at the end, as the worker writes it to
  the table (compact JSON): bytes per customer, and microseconds to encode and decode.
- ``record_json``: whole table values (rules state and behaviour profile) after
  ``--record-days`` days of ``--record-customers`` customers, each written once, then
  the next ``--record-write-days`` days' transactions, each followed by the timed write
  of its customer's record, as a book of many customers writes (one customer rarely
  transacts twice within a flush): microseconds per write
  (``CustomerRecord.to_json_bytes``) and to decode, mean bytes per half; and the same
  transactions again, each record first decoded from the bytes the table held, as a
  book larger than the worker's decoded-record cache goes: microseconds per write
  after a decode.

Usage: ``.venv/bin/python bench/rules_bench.py [--customers N] [--days N] [--out PATH]``
(``--record-customers N --record-days N --record-write-days N`` for the table values)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from datetime import UTC, date, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from core.compiled import MANIFEST as COMPILED_MANIFEST
from core.settings import Settings
from core.transaction import Transaction, transaction_from_mapping
from rules.backtest import in_event_order, run_backtest
from rules.engine import RuleEngine
from rules.state import CustomerState
from stream.customer_table import CustomerRecord
from stream.detection_engine import build_rule_engine
from stream.scoring import BehaviourTracker
from stream.simulator import derive_rng, generate_history, generate_reference

ROOT = Path(__file__).resolve().parents[1]


def measure(engine: RuleEngine, transactions: list[Transaction], customers: dict) -> dict:
    """Wall and CPU seconds to run the backtest loop once; detections counted."""
    wall, cpu = time.perf_counter(), time.process_time()
    detections = sum(1 for _ in run_backtest(transactions, customers, engine))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "transactions_per_second": round(len(transactions) / wall, 1),
        "transactions_per_cpu_second": round(len(transactions) / cpu, 1),
        "detections": detections,
    }


def state_json(engine: RuleEngine, transactions: list[Transaction], customers: dict) -> dict:
    """Size and encode/decode cost of every customer's final rules state."""
    states: dict[str, CustomerState] = {}
    for tx in transactions:
        state = states.setdefault(tx.customer_id, CustomerState())
        engine.process(state, tx, customers.get(tx.customer_id))
    # The second write of each state is timed: the worker writes a customer every batch.
    documents = [state.to_json() for state in states.values()]
    cpu = time.process_time()
    documents = [state.to_json() for state in states.values()]
    encode = time.process_time() - cpu
    cpu = time.process_time()
    for document in documents:
        CustomerState.from_dict(json.loads(document))
    decode = time.process_time() - cpu
    sizes = sorted(len(document.encode()) for document in documents)
    return {
        "customers": len(sizes),
        "mean_bytes": round(statistics.mean(sizes)),
        "p95_bytes": sizes[int(0.95 * (len(sizes) - 1))],
        "max_bytes": sizes[-1],
        "encode_microseconds": round(encode / len(sizes) * 1e6, 1),
        "decode_microseconds": round(decode / len(sizes) * 1e6, 1),
    }


def record_json(
    engine: RuleEngine, *, customers: int, days: int, write_days: int, seed: int
) -> dict:
    """Cost of the worker's table write: a record changed by one transaction, encoded again."""
    rng = derive_rng(seed, "record-bench")
    people, _managers = generate_reference(rng, customers, max(1, customers // 25),
                                           as_of=date(2026, 1, 1))  # fmt: skip
    history = generate_history(rng, people, start=date(2026, 1, 1), days=days + write_days)
    transactions = in_event_order(transaction_from_mapping(document) for document in history)
    known = {c.customer_id: c for c in people}
    tz = engine.reference.timezone
    behaviour = BehaviourTracker.from_reference(engine.reference)
    last_day = date(2026, 1, 1).toordinal() + days
    records: dict[str, CustomerRecord] = {}
    following: list[Transaction] = []

    def apply(tx: Transaction) -> CustomerRecord:
        record = records.setdefault(tx.customer_id, CustomerRecord.new(tz))
        customer = known.get(tx.customer_id)
        engine.process(record.rules, tx, customer)
        behaviour.observe(record.profile, tx, customer, scoring=False)
        return record

    for tx in transactions:
        if tx.timestamp.astimezone(tz).toordinal() < last_day:
            apply(tx)
        elif tx.customer_id in records:
            following.append(tx)
    # The write of the batch before, and what the table then holds.
    stored = {customer_id: record.to_json_bytes() for customer_id, record in records.items()}
    written = []
    encode = 0.0
    for tx in following:
        record = apply(tx)
        cpu = time.process_time()
        written.append(record.to_json_bytes())
        encode += time.process_time() - cpu
    cpu = time.process_time()
    for raw in written:
        CustomerRecord.from_json_bytes(raw, tz=tz)
    decode = time.process_time() - cpu
    # Again, as a book larger than the worker's decoded-record cache goes: each
    # transaction's record decoded from the table's bytes, changed, written.
    encode_after_decode = 0.0
    for tx in following:
        records[tx.customer_id] = CustomerRecord.from_json_bytes(stored[tx.customer_id], tz=tz)
        record = apply(tx)
        cpu = time.process_time()
        stored[tx.customer_id] = record.to_json_bytes()
        encode_after_decode += time.process_time() - cpu
    halves = [json.loads(raw) for raw in written]
    return {
        "customers": len(records),
        "writes": len(written),
        "days": days,
        "write_days": write_days,
        "encode_microseconds": round(encode / len(written) * 1e6, 1),
        "decode_microseconds": round(decode / len(written) * 1e6, 1),
        "encode_after_decode_microseconds": round(encode_after_decode / len(written) * 1e6, 1),
        "mean_bytes": round(statistics.mean(len(raw) for raw in written)),
        "mean_rules_bytes": round(statistics.mean(len(_compact(h["rules"])) for h in halves)),
        "mean_profile_bytes": round(statistics.mean(len(_compact(h["profile"])) for h in halves)),
    }


def _compact(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--record-customers", type=int, default=400)
    parser.add_argument("--record-days", type=int, default=60)
    parser.add_argument(
        "--record-write-days", type=int, default=5, help="days of timed writes, one per transaction"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rules.json")
    args = parser.parse_args()

    console = Console()
    rng = derive_rng(args.seed, "rules-bench")
    people, _managers = generate_reference(rng, args.customers, max(1, args.customers // 25),
                                           as_of=date(2026, 1, 1))  # fmt: skip
    history = generate_history(rng, people, start=date(2026, 1, 1), days=args.days)
    transactions = in_event_order(transaction_from_mapping(document) for document in history)
    customers = {c.customer_id: c for c in people}

    engine = build_rule_engine(Settings())
    empty = RuleEngine(
        dataclasses.replace(engine.pack, rules=()), engine.reference,
        lateness_hours=engine.lateness_hours,
    )  # fmt: skip
    console.print(f"{len(transactions):,} transactions, {args.customers} customers")
    state_only = measure(empty, transactions, customers)
    full_pack = measure(engine, transactions, customers)
    sizes = state_json(engine, transactions, customers)
    records = record_json(
        engine,
        customers=args.record_customers,
        days=args.record_days,
        write_days=args.record_write_days,
        seed=args.seed,
    )
    result = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "compiled": COMPILED_MANIFEST.exists(),  # per-transaction modules (setup.py)
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "transactions": len(transactions),
        "customers": args.customers,
        "days": args.days,
        "seed": args.seed,
        "pack": engine.pack.label,
        "rules": len(engine.pack.rules),
        "state_only": state_only,
        "full_pack": full_pack,
        "state_json": sizes,
        "record_json": records,
        "full_pack_cost_relative_to_state_only": round(
            state_only["transactions_per_cpu_second"] / full_pack["transactions_per_cpu_second"],
            2,
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    table = Table(title=f"Rules in process ({engine.pack.label})")
    for column in ("", "tx/s", "tx per CPU-s", "detections"):
        table.add_column(column)
    for name, figures in (("state only", state_only), ("state + full pack", full_pack)):
        table.add_row(
            name,
            f"{figures['transactions_per_second']:,.0f}",
            f"{figures['transactions_per_cpu_second']:,.0f}",
            f"{figures['detections']:,}",
        )
    console.print(table)
    console.print(
        f"rules state JSON per customer: {sizes['mean_bytes']:,} bytes on average, "
        f"{sizes['p95_bytes']:,} at p95; encode {sizes['encode_microseconds']:.0f} us, "
        f"decode {sizes['decode_microseconds']:.0f} us"
    )
    console.print(
        f"table value after {records['days']} days: {records['mean_bytes']:,} bytes on average "
        f"(rules {records['mean_rules_bytes']:,}, profile {records['mean_profile_bytes']:,}); "
        f"write {records['encode_microseconds']:.0f} us, "
        f"decode {records['decode_microseconds']:.0f} us"
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
