"""``amlwatch backtest --evaluate-from``: the whole file builds state, the window is evaluated."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd  # type: ignore[import-untyped]
import typer
from typer.testing import CliRunner

from core.transaction import transaction_from_mapping
from models.features import build_feature_matrix, country_risk_from_lists
from rules.backtest import scenarios_beginning_from
from rules.reference_data import load_rates
from stream.backtest_command import backtest, scoring_frame
from stream.simulator import (
    derive_rng,
    generate_history,
    generate_reference,
    write_customers_csv,
    write_transactions_csv,
)

START = date(2026, 1, 1)
WINDOW = date(2026, 1, 15)
TZ = ZoneInfo("Asia/Shanghai")
app = typer.Typer()
app.command("backtest")(backtest)
app.command("unused")(lambda: None)  # two commands, so "backtest" stays a subcommand
runner = CliRunner(env={"COLUMNS": "200"})


def _files(directory: Path) -> tuple[list[str], list[dict[str, object]]]:
    rng = derive_rng(8, "backtest-window")
    people, _managers = generate_reference(rng, 60, 2, as_of=START)
    history = list(generate_history(rng, people, start=START, days=28, scenario_rate=20.0))
    write_transactions_csv(directory / "tx.csv", history)
    write_customers_csv(directory / "customers.csv", people)
    options = ["--transactions", str(directory / "tx.csv"),
               "--customers", str(directory / "customers.csv"), "--no-model"]  # fmt: skip
    return options, history


def _alerts(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _row(output: str, name: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.strip("│┃ ").startswith(name))
    return [cell.strip() for cell in line.strip("│┃ ").split("│")]


def test_evaluate_from_replays_everything_but_keeps_only_the_window(tmp_path: Path) -> None:
    options, history = _files(tmp_path)

    whole = runner.invoke(app, ["backtest", *options, "--out", str(tmp_path / "all.jsonl")])
    window = runner.invoke(
        app,
        ["backtest", *options, "--out", str(tmp_path / "w.jsonl"),
         "--evaluate-from", WINDOW.isoformat()],
    )  # fmt: skip

    assert whole.exit_code == 0, whole.output
    assert window.exit_code == 0, window.output
    every = _alerts(tmp_path / "all.jsonl")
    kept = _alerts(tmp_path / "w.jsonl")
    # The same detections as the whole replay from that day on: state built from day 1.
    assert kept == [a for a in every if str(a["bank_day"]) >= WINDOW.isoformat()]
    assert kept and len(kept) < len(every)

    transactions = [transaction_from_mapping(doc) for doc in history]
    in_window = [tx for tx in transactions if tx.timestamp.astimezone(TZ).date() >= WINDOW]
    counted = scenarios_beginning_from(transactions, WINDOW, TZ)
    every_scenario = {
        tx.extra["sim_scenario_id"] for tx in transactions if tx.extra["sim_typology"]
    }
    assert counted and counted < every_scenario
    scenario_cells = [
        int(_row(window.output, typology)[1])
        for typology in {
            tx.extra["sim_typology"] for tx in transactions if tx.extra["sim_typology"]
        }
        if any(line.strip("│┃ ").startswith(typology) for line in window.output.splitlines())
    ]
    assert sum(scenario_cells) == len(counted), "recall counts the scenarios begun in the window"
    per_thousand = float(_row(window.output, "alerts per 1,000 tx")[2])
    assert per_thousand == round(1000 * len(kept) / len(in_window), 2)
    assert re.search(rf"from {WINDOW}: {len(in_window):,} transactions", window.output)


def test_the_scoring_frame_gives_the_features_of_a_frame_of_whole_rows() -> None:
    rng = derive_rng(9, "backtest-scoring-frame")
    people, _managers = generate_reference(rng, 40, 2, as_of=START)
    transactions = [
        transaction_from_mapping(document)
        for document in generate_history(rng, people, start=START, days=21, scenario_rate=20.0)
    ]
    assert any(tx.counterparty_id is None for tx in transactions)
    assert any(tx.currency != "CNY" for tx in transactions)
    rates = load_rates()
    customers = {person.customer_id: person for person in people}
    risk = country_risk_from_lists(grey=("MM",), black=("KP", "IR"))
    whole_rows = pd.DataFrame(
        [
            {**tx.to_dict(), "amount_cny": rates.to_cny(tx.amount, tx.currency)}
            for tx in transactions
        ]
    )

    expected = build_feature_matrix(whole_rows, customers, risk, TZ)
    found = build_feature_matrix(scoring_frame(transactions, rates), customers, risk, TZ)

    pd.testing.assert_frame_equal(found, expected)
