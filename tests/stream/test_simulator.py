from __future__ import annotations

import asyncio
import io
import itertools
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
from aiokafka import AIOKafkaConsumer
from typer.testing import CliRunner

from core.transaction import (
    InvalidTransaction,
    decode_transaction,
    transaction_from_mapping,
)
from stream.broker import EmbeddedBroker, free_loopback_port
from stream.simulate_command import simulate
from stream.simulator import (
    CUSTOMER_COLUMNS,
    HIGH_RISK_COUNTRIES,
    MANAGER_COLUMNS,
    SHANGHAI,
    TRANSACTION_CSV_COLUMNS,
    Customer,
    MalformedKind,
    Manager,
    Typology,
    derive_rng,
    generate_history,
    generate_reference,
    iter_messages,
    iter_transactions,
    malformed_payload,
    malformed_payloads,
    read_transactions_csv,
    write_customers_csv,
    write_managers_csv,
    write_transactions_csv,
)

START = date(2024, 3, 1)
DAYS = 30


def population(seed: int = 7, customers: int = 200) -> tuple[list[Customer], list[Manager]]:
    return generate_reference(
        derive_rng(seed, "reference"), customers, max(1, customers // 25), as_of=START
    )


def history(seed: int = 7, customers: int = 200, days: int = DAYS) -> list[dict[str, Any]]:
    people, _ = population(seed, customers)
    return generate_history(derive_rng(seed, "transactions"), people, start=START, days=days)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return history()


def by_scenario(rows: list[dict[str, Any]], typology: Typology) -> dict[str, list[dict[str, Any]]]:
    scenarios: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["sim_typology"] == typology:
            scenarios[row["sim_scenario_id"]].append(row)
    return scenarios


def moment(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["timestamp"])


def csv_text(write: Any, records: Any) -> str:
    buffer = io.StringIO()
    write(buffer, records)
    return buffer.getvalue()


# ---------------------------------------------------------------- reference data


def test_reference_csvs_have_exactly_the_contract_columns() -> None:
    customers, managers = population()
    assert csv_text(write_customers_csv, customers).splitlines()[0] == ",".join(CUSTOMER_COLUMNS)
    assert csv_text(write_managers_csv, managers).splitlines()[0] == ",".join(MANAGER_COLUMNS)
    assert ",".join(CUSTOMER_COLUMNS) == (
        "customer_id,name,type,risk_rating,manager_id,country,opened_on,id_type,id_number"
    )
    assert ",".join(MANAGER_COLUMNS) == "manager_id,name,email,grade,supervisor_id,branch,active"


def test_customers_belong_to_existing_active_managers_and_every_active_manager_has_some() -> None:
    customers, managers = population(customers=300)
    known = {m.manager_id: m for m in managers}
    assert len(known) == len(managers) == 12
    assert {c.manager_id for c in customers} <= known.keys()
    assert all(known[c.manager_id].active for c in customers)
    assert {m.manager_id for m in managers if m.active} == {c.manager_id for c in customers}
    assert len({c.customer_id for c in customers}) == len(customers)


def test_manager_supervisor_chain_ends_at_the_top_without_cycles() -> None:
    for seed in range(20):
        _, managers = generate_reference(random.Random(seed), 200, 1 + seed * 3, as_of=START)
        by_id = {m.manager_id: m for m in managers}
        for manager in managers:
            seen = set()
            current: Manager | None = manager
            while current is not None:
                assert current.manager_id not in seen, "supervisor cycle"
                seen.add(current.manager_id)
                current = by_id[current.supervisor_id] if current.supervisor_id else None
        assert sum(m.supervisor_id is None for m in managers) == 1
        assert all(by_id[m.supervisor_id].active for m in managers if m.supervisor_id)


def test_reference_values_are_plausible() -> None:
    customers, managers = population()
    assert {c.type for c in customers} == {"individual", "corporate"}
    assert {c.risk_rating for c in customers} <= {"low", "medium", "high"}
    assert {m.grade for m in managers} <= {"junior", "intermediate", "senior"}
    assert all(c.opened_on < START for c in customers)
    assert Counter(c.country for c in customers)["CN"] > 0.9 * len(customers)
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    for customer in customers:
        if customer.id_type == "resident_id":
            body, check = customer.id_number[:17], customer.id_number[17]
            total = sum(int(d) * w for d, w in zip(body, weights, strict=True))
            assert "10X98765432"[total % 11] == check
    assert all("@" in m.email for m in managers)


# ---------------------------------------------------------------- transactions


def test_same_seed_gives_byte_identical_output_and_another_seed_differs() -> None:
    first = csv_text(write_transactions_csv, history(seed=3, customers=50, days=10))
    again = csv_text(write_transactions_csv, history(seed=3, customers=50, days=10))
    other = csv_text(write_transactions_csv, history(seed=4, customers=50, days=10))
    assert first == again
    assert first != other
    assert csv_text(write_customers_csv, population(3)[0]) == csv_text(
        write_customers_csv, population(3)[0]
    )


def test_every_generated_row_validates_also_after_a_csv_round_trip(
    rows: list[dict[str, Any]],
) -> None:
    assert len(rows) > 5000
    for row in rows:
        tx = transaction_from_mapping(row)
        assert tx.amount == tx.amount.quantize(Decimal("0.01"))
        assert isinstance(row["amount"], str) and row["amount"].count(".") == 1
        assert len(row["amount"].split(".")[1]) == 2
        assert tx.timestamp.utcoffset() == timedelta(hours=8)
        assert row["timestamp"].endswith("+08:00")
        assert tx.extra["sim_typology"] in {"", *Typology}
    assert len({row["tx_id"] for row in rows}) == len(rows)
    timestamps = [moment(row) for row in rows]
    assert timestamps == sorted(timestamps)
    assert timestamps[0].date() >= START and timestamps[-1].date() < START + timedelta(DAYS)

    text = csv_text(write_transactions_csv, rows)
    assert text.splitlines()[0] == ",".join(TRANSACTION_CSV_COLUMNS)
    reread = list(read_transactions_csv(io.StringIO(text)))
    assert len(reread) == len(rows)
    for original, copy in zip(rows, reread, strict=True):
        assert transaction_from_mapping(copy) == transaction_from_mapping(original)


def test_every_typology_appears_with_labels_in_a_modest_run(rows: list[dict[str, Any]]) -> None:
    labelled = Counter(row["sim_typology"] for row in rows)
    for typology in Typology:
        assert labelled[typology] > 0, f"no {typology} in 200 customers x 30 days"
    for row in rows:
        assert bool(row["sim_typology"]) == bool(row["sim_scenario_id"])
    assert labelled[""] > 0.9 * len(rows)
    # A scenario id belongs to one typology only.
    typology_of: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["sim_scenario_id"]:
            typology_of[row["sim_scenario_id"]].add(row["sim_typology"])
    assert all(len(kinds) == 1 for kinds in typology_of.values())


def test_typologies_appear_for_other_seeds_too() -> None:
    for seed in (1, 2, 99):
        labelled = {row["sim_typology"] for row in history(seed=seed)}
        assert labelled >= set(Typology), seed


def test_structuring_is_cash_in_just_under_the_threshold(rows: list[dict[str, Any]]) -> None:
    scenarios = by_scenario(rows, Typology.STRUCTURING)
    assert scenarios
    for deposits in scenarios.values():
        assert len(deposits) >= 3 or moment(deposits[-1]).date() >= START + timedelta(DAYS - 4)
        assert len({d["customer_id"] for d in deposits}) == 1
        for deposit in deposits:
            assert Decimal("45000") <= Decimal(deposit["amount"]) < Decimal("50000")
            assert (deposit["channel"], deposit["currency"], deposit["direction"]) == (
                "cash",
                "CNY",
                "in",
            )
        assert moment(deposits[-1]) - moment(deposits[0]) <= timedelta(days=4)


def test_fan_in_and_fan_out_involve_many_distinct_counterparties_quickly(
    rows: list[dict[str, Any]],
) -> None:
    for typology, direction in ((Typology.FAN_IN, "in"), (Typology.FAN_OUT, "out")):
        for legs in by_scenario(rows, typology).values():
            fanned = [leg for leg in legs if leg["direction"] == direction]
            assert len({leg["counterparty_id"] for leg in fanned}) >= 10
            assert moment(fanned[-1]) - moment(fanned[0]) <= timedelta(hours=24)
            assert len({leg["customer_id"] for leg in legs}) == 1


def test_pass_through_money_leaves_within_hours_at_a_similar_amount(
    rows: list[dict[str, Any]],
) -> None:
    for legs in by_scenario(rows, Typology.RAPID_PASS_THROUGH).values():
        ins = [leg for leg in legs if leg["direction"] == "in"]
        outs = [leg for leg in legs if leg["direction"] == "out"]
        assert ins and len(ins) == len(outs)
        for leg_in in ins:
            amount_in = Decimal(leg_in["amount"])
            assert any(
                timedelta(0) < moment(out) - moment(leg_in) <= timedelta(hours=6)
                and Decimal("0.95") * amount_in <= Decimal(out["amount"]) < amount_in
                for out in outs
            )


def test_cycles_return_the_money_to_where_it_started(rows: list[dict[str, Any]]) -> None:
    for legs in by_scenario(rows, Typology.CYCLE).values():
        owner_of_account = {leg["account_id"]: leg["customer_id"] for leg in legs}
        edges = {
            leg["customer_id"]: owner_of_account[leg["counterparty_id"]]
            for leg in legs
            if leg["direction"] == "out"
        }
        assert len(edges) >= 2
        start = next(iter(edges))
        current, steps = edges[start], 1
        while current != start:
            current, steps = edges[current], steps + 1
            assert steps <= len(edges)
        assert steps == len(edges)
        assert sum(leg["direction"] == "in" for leg in legs) == len(edges)


def test_dormant_accounts_are_silent_before_their_reactivation(rows: list[dict[str, Any]]) -> None:
    scenarios = by_scenario(rows, Typology.DORMANT_REACTIVATION)
    assert scenarios
    for legs in scenarios.values():
        customer, first = legs[0]["customer_id"], moment(legs[0])
        own = [row for row in rows if row["customer_id"] == customer]
        assert all(moment(row) >= first for row in own)
        assert max(Decimal(leg["amount"]) for leg in legs) >= Decimal("10000")


def test_high_risk_geography_uses_the_listed_countries(rows: list[dict[str, Any]]) -> None:
    for legs in by_scenario(rows, Typology.HIGH_RISK_GEOGRAPHY).values():
        assert all(leg["counterparty_country"] in HIGH_RISK_COUNTRIES for leg in legs)
    normal_countries = {row.get("counterparty_country") for row in rows if not row["sim_typology"]}
    assert not normal_countries & set(HIGH_RISK_COUNTRIES)


def test_normal_traffic_has_daily_and_weekly_cycles_and_realistic_mixes(
    rows: list[dict[str, Any]],
) -> None:
    normal = [row for row in rows if not row["sim_typology"]]
    hours = Counter(moment(row).hour for row in normal)
    assert sum(hours[h] for h in range(1, 5)) * 10 < sum(hours[h] for h in range(9, 13))
    weekdays = Counter(moment(row).weekday() for row in normal)
    assert weekdays[6] < weekdays[2]
    currencies = Counter(row["currency"] for row in normal)
    assert currencies["CNY"] > 0.9 * len(normal)
    assert len(currencies) >= 4
    assert set(Counter(row["channel"] for row in normal)) == {
        "cash",
        "transfer",
        "card",
        "wire",
        "other",
    }
    assert any(row.get("counterparty_country", "CN") != "CN" for row in normal)
    # Counterparties are reused: far fewer distinct ones than transactions with one.
    per_customer: dict[str, list[str]] = defaultdict(list)
    for row in normal:
        if row.get("counterparty_id"):
            per_customer[row["customer_id"]].append(row["counterparty_id"])
    distinct = sum(len(set(ids)) for ids in per_customer.values())
    assert distinct < 0.5 * sum(len(ids) for ids in per_customer.values())
    people, _ = population()
    kinds = {c.customer_id: c.type for c in people}
    salaries = [r for r in normal if r.get("description") == "工资"]
    assert salaries and all(kinds[r["customer_id"]] == "individual" for r in salaries)
    size = defaultdict(list)
    for row in normal:
        if row["currency"] == "CNY" and row["channel"] == "transfer":
            size[kinds[row["customer_id"]]].append(Decimal(row["amount"]))
    median = {kind: sorted(values)[len(values) // 2] for kind, values in size.items()}
    assert median["corporate"] > 10 * median["individual"]


def test_an_endless_stream_can_be_consumed_lazily() -> None:
    people, _ = population(customers=20)
    stream = iter_transactions(random.Random(5), people, start=START)
    head = list(itertools.islice(stream, 3000))
    for row in head:
        transaction_from_mapping(row)
    assert moment(head[-1]).date() > START + timedelta(days=30)


def test_bad_arguments_are_refused() -> None:
    people, _ = population(customers=5)
    with pytest.raises(ValueError):
        generate_reference(random.Random(1), 0, 1, as_of=START)
    with pytest.raises(ValueError):
        generate_history(random.Random(1), people, start=START, days=0)
    with pytest.raises(ValueError):
        generate_history(random.Random(1), [], start=START, days=1)


# ---------------------------------------------------------------- malformed messages


def test_each_malformed_kind_fails_decoding_with_its_reason(rows: list[dict[str, Any]]) -> None:
    rng = random.Random(11)
    templates = [None, *rows[:50]]
    for kind in MalformedKind:
        for attempt in range(60):
            payload = malformed_payload(kind, rng, templates[attempt % len(templates)])
            with pytest.raises(InvalidTransaction) as refused:
                decode_transaction(payload)
            assert refused.value.reason == kind.expected_reason, (kind, payload[:80])


def test_malformed_payloads_yields_every_kind() -> None:
    kinds = Counter(kind for kind, _ in itertools.islice(malformed_payloads(random.Random(2)), 500))
    assert set(kinds) == set(MalformedKind)


def test_messages_slot_malformed_ones_in_without_changing_the_valid_ones(
    rows: list[dict[str, Any]],
) -> None:
    sample = rows[:2000]
    clean = list(iter_messages(sample, random.Random(1)))
    assert [decode_transaction(m.value).to_dict() for m in clean] == [
        transaction_from_mapping(r).to_dict() for r in sample
    ]
    assert all(m.key == r["customer_id"].encode() for m, r in zip(clean, sample, strict=True))
    mixed = list(iter_messages(sample, random.Random(1), malformed_rate=0.1))
    broken = [m for m in mixed if m.malformed is not None]
    assert 0.05 * len(mixed) < len(broken) < 0.15 * len(mixed)
    assert [m.value for m in mixed if m.malformed is None] == [m.value for m in clean]


def test_live_messages_are_stamped_by_the_clock(rows: list[dict[str, Any]]) -> None:
    now = datetime(2025, 6, 1, 12, 0, 0, 123000, tzinfo=SHANGHAI)
    messages = list(iter_messages(rows[:5], random.Random(1), clock=lambda: now))
    for message in messages:
        tx = decode_transaction(message.value)
        assert tx.timestamp == now
        assert message.timestamp_ms == int(now.timestamp() * 1000)
    assert b"2025-06-01T12:00:00.123+08:00" in messages[0].value


# ---------------------------------------------------------------- the command


def simulator_env(topic: str) -> dict[str, str]:
    """Settings for a simulator run against the test broker (given by --broker)."""
    return {"AMLWATCH_TRANSACTIONS_TOPIC": topic, "AMLWATCH_DEV_BROKER_PROFILE": "true"}


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """amlwatch (test harness)."""

    app.command("simulate")(simulate)
    return app


def test_cli_file_mode_is_deterministic_and_writes_all_three_files(tmp_path: Path) -> None:
    runner = CliRunner()
    outputs = []
    for run in ("a", "b"):
        result = runner.invoke(
            cli_app(),
            [
                *shlex.split("simulate --customers 60 --seed 42 --start 2024-02-01 --days 10"),
                *("--to-file", str(tmp_path / run / "tx.csv")),
                *("--out-dir", str(tmp_path / run / "ref")),
            ],
        )
        assert result.exit_code == 0, result.output
        assert "seed 42" in result.stdout and "transactions to" in result.stdout
        outputs.append(
            [(tmp_path / run / name).read_bytes() for name in ("tx.csv", "ref/customers.csv")]
            + [(tmp_path / run / "ref" / "managers.csv").read_bytes()]
        )
    assert outputs[0] == outputs[1]
    rows = list(read_transactions_csv(tmp_path / "a" / "tx.csv"))
    assert rows and all(transaction_from_mapping(row) for row in rows)
    assert rows[0]["timestamp"].startswith("2024-02-01")
    assert not list(tmp_path.glob("**/*.partial"))
    managers = (tmp_path / "a" / "ref" / "managers.csv").read_text().splitlines()
    assert len(managers) == 1 + 2


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--to-file", "x.csv", "--rate", "5"], "--rate"),
        (["--to-file", "x.csv", "--count", "5"], "--count"),
        (["--to-file", "x.csv", "--malformed-rate", "0.1"], "--malformed-rate"),
        (["--to-file", "x.txt"], "--to-file"),
        (["--start", "2024-01-01"], "--start"),
        (["--rate", "0"], "--rate"),
        (["--rate", "-3"], "--rate"),
        (["--broker", "localhost"], "--broker"),
        (["--malformed-rate", "1.5"], "--malformed-rate"),
        (["--to-file", "x.csv", "--start", "2024-13-01"], "--start"),
        (["--customers", "3", "--managers", "5"], "--managers"),
    ],
)
def test_cli_refuses_bad_options_clearly(
    tmp_path: Path, arguments: list[str], complaint: str
) -> None:
    result = CliRunner().invoke(cli_app(), ["simulate", "--out-dir", str(tmp_path), *arguments])
    assert result.exit_code == 2, result.output
    assert complaint in result.output


def test_cli_kafka_mode_sends_count_messages_that_decode(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topic = f"sim-{uuid.uuid4().hex[:10]}"
    result = CliRunner().invoke(
        cli_app(),
        [
            *shlex.split("simulate --customers 30 --seed 5 --count 50 --rate 500"),
            *("--broker", broker.bootstrap, "--out-dir", str(tmp_path)),
        ],
        env=simulator_env(topic),
    )
    assert result.exit_code == 0, result.output
    assert "Sent 50 messages" in result.stdout
    records = asyncio.run(consume(broker.bootstrap, topic, expected=50))
    assert len(records) == 50
    before = datetime.now(SHANGHAI) - timedelta(minutes=5)
    for key, value in records:
        tx = decode_transaction(value)
        assert key == tx.customer_id.encode()
        assert tx.timestamp > before and tx.timestamp.utcoffset() == timedelta(hours=8)
    assert (tmp_path / "customers.csv").exists() and (tmp_path / "managers.csv").exists()


def test_cli_kafka_mode_reports_an_unreachable_broker(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli_app(),
        [
            *("simulate", "--count", "5", "--out-dir", str(tmp_path)),
            *("--broker", f"127.0.0.1:{free_loopback_port()}"),
        ],
    )
    assert result.exit_code == 1
    assert "cannot produce to" in result.output


async def consume(
    bootstrap: str, topic: str, expected: int, timeout: float = 20.0
) -> list[tuple[bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[tuple[bytes | None, bytes]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while len(records) < expected and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend((record.key, record.value) for record in batch)
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            records.extend((record.key, record.value) for record in batch)
    finally:
        await consumer.stop()
    return records


SIMULATOR_PROCESS = """
import typer
from stream.simulate_command import simulate
app = typer.Typer()
app.command()(simulate)
app()
"""


def test_sigterm_stops_an_endless_run_cleanly_with_everything_sent(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topic = f"sim-{uuid.uuid4().hex[:10]}"
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [
            *(sys.executable, "-c", SIMULATOR_PROCESS),
            *shlex.split("--customers 20 --rate 400 --malformed-rate 0.1"),
            *("--broker", broker.bootstrap, "--out-dir", str(tmp_path)),
        ],
        cwd=root,
        env={**os.environ, **simulator_env(topic)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "Ctrl-C stops" in process.stdout.readline()
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    summary = re.search(r"Sent ([\d,]+) messages .*\(stopped\).* malformed ([\d,]+);", out)
    assert summary is not None, out
    sent, malformed = (int(group.replace(",", "")) for group in summary.groups())
    assert sent > 100 and malformed > 0
    records = asyncio.run(consume(broker.bootstrap, topic, expected=sent))
    assert len(records) == sent
    failures = 0
    for _, value in records:
        try:
            decode_transaction(value)
        except InvalidTransaction:
            failures += 1
    assert failures == malformed
