"""Anomaly model cost, in process: scoring rows/s by batch size, and features + scoring.

One run over simulated history (fixed seed): the detector is trained on the features
of the file, then timed scoring batches of 1, 100 and 1,000 rows, and the per-transaction
cost of the streaming path (profile features + update) with scoring in batches of 100.

Usage: ``.venv/bin/python bench/model_bench.py [--customers N] [--days N] [--out PATH]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd  # type: ignore[import-untyped]
import sklearn  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table

from core.transaction import transaction_from_mapping
from models.detector import AnomalyDetector
from models.features import (
    FEATURE_NAMES,
    BehaviourProfile,
    build_feature_matrix,
    country_risk_from_lists,
)
from stream.simulator import derive_rng, generate_history, generate_reference

ROOT = Path(__file__).resolve().parents[1]
SHANGHAI = ZoneInfo("Asia/Shanghai")
BATCH_SIZES = (1, 100, 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model.json")
    args = parser.parse_args()
    console = Console()

    rng = derive_rng(args.seed, "model-bench")
    people, _ = generate_reference(rng, args.customers, max(1, args.customers // 25),
                                   as_of=date(2026, 1, 1))  # fmt: skip
    history = generate_history(rng, people, start=date(2026, 1, 1), days=args.days)
    customers = {c.customer_id: c for c in people}
    # CNY-only amounts keep the bench free of rate tables; features only need CNY.
    documents = [doc for doc in history if doc["currency"] == "CNY"]
    frame = pd.DataFrame([{**doc, "amount_cny": doc["amount"]} for doc in documents])
    risk = country_risk_from_lists(grey=(), black=("KP", "IR", "MM"))
    started = time.perf_counter()
    matrix = build_feature_matrix(frame, customers, risk, SHANGHAI)
    training_features_seconds = time.perf_counter() - started
    detector = AnomalyDetector(random_state=0).fit(matrix)

    scoring: dict[str, dict[str, float]] = {}
    for size in BATCH_SIZES:
        batches = max(3, min(200, 20_000 // size))
        chunk = matrix.iloc[:size]
        began = time.perf_counter()
        for _ in range(batches):
            detector.risk_score(chunk)
        seconds = time.perf_counter() - began
        scoring[str(size)] = {
            "batches": batches,
            "rows_per_second": round(size * batches / seconds, 1),
            "ms_per_batch": round(1000 * seconds / batches, 3),
        }

    # Streaming path: features from the profile, then update, scoring every 100 rows.
    profiles: dict[str, BehaviourProfile] = {}
    rows = documents[:20_000]
    pending: list[list[float]] = []
    began = time.perf_counter()
    for row in rows:
        tx = transaction_from_mapping(row)
        profile = profiles.setdefault(tx.customer_id, BehaviourProfile(SHANGHAI))
        amount = tx.amount
        pending.append(list(profile.features(tx, amount, customers[tx.customer_id], risk)))
        profile.update(tx, amount)
        if len(pending) == 100:
            detector.risk_score(pd.DataFrame(pending, columns=FEATURE_NAMES))
            pending.clear()
    streaming_seconds = time.perf_counter() - began

    result = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "scikit_learn": sklearn.__version__},
        "rows": len(frame),
        "features": len(FEATURE_NAMES),
        "training_features_rows_per_second": round(len(frame) / training_features_seconds, 1),
        "scoring_by_batch_size": scoring,
        "streaming_features_and_scoring": {
            "transactions": len(rows),
            "microseconds_per_transaction": round(1e6 * streaming_seconds / len(rows), 1),
            "transactions_per_second": round(len(rows) / streaming_seconds, 1),
            "scoring_batch": 100,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    table = Table(title="Anomaly model, in process")
    table.add_column("measured")
    table.add_column("rate", justify="right")
    for batch_size, figures in scoring.items():
        table.add_row(
            f"score batch of {batch_size}",
            f"{figures['rows_per_second']:,.0f} rows/s ({figures['ms_per_batch']} ms)",
        )
    stream_figures = result["streaming_features_and_scoring"]
    assert isinstance(stream_figures, dict)
    table.add_row(
        "profile features + update + scoring (batches of 100)",
        f"{stream_figures['transactions_per_second']:,.0f} tx/s",
    )
    table.add_row(
        "training features (vectorised)",
        f"{result['training_features_rows_per_second']:,.0f} rows/s",
    )
    console.print(table)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
