"""The customer table keeps recent records decoded, never a stale one, stages changed records
until a flush writes each once, and reports its size."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import faust
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from core.settings import Settings
from stream.app import build_app
from stream.broker import EmbeddedBroker
from stream.customer_table import ChangelogBatches, CustomerRecord, CustomerTable, SizedValues
from stream.customers import CustomerDirectory
from stream.detection_engine import build_rule_engine
from stream.topics import ensure_topics
from tests.conftest import consume_all

TZ = ZoneInfo("Asia/Shanghai")


def table_holding(
    values: dict[str, bytes],
    *,
    decoded_kept: int,
    flush_after_seconds: float = 3600.0,
    flush_after_stages: int = 1,
    flush_when_quiet_for: float = 3600.0,
) -> CustomerTable:
    app = faust.App("customer-table-test", store="memory://")
    faust_table = faust.Table(app, name="state", key_type=bytes, value_type=bytes)
    # Values put straight into the store, as changelog recovery does.
    for customer_id, raw in values.items():
        faust_table.data[customer_id.encode()] = raw
    # These tests read only: a changelog that is never written to.
    changelog = ChangelogBatches(lambda: None, "state-changelog", 1)
    return CustomerTable(
        faust_table,
        TZ,
        changelog,
        decoded_kept=decoded_kept,
        flush_after_seconds=flush_after_seconds,
        flush_after_stages=flush_after_stages,
        flush_when_quiet_for=flush_when_quiet_for,
    )


def record_bytes(transactions: int) -> bytes:
    record = CustomerRecord.new(TZ)
    record.rules.transactions = transactions
    return record.to_json_bytes()


def test_a_record_stays_decoded_while_its_bytes_are_the_tables() -> None:
    table = table_holding({"C1": record_bytes(1)}, decoded_kept=10)

    first = table.get("C1")
    assert first is not None and first.rules.transactions == 1
    assert table.get("C1") is first

    # A new value for the key (recovered, or written by another path) is decoded afresh.
    table.table.data[b"C1"] = record_bytes(2)
    again = table.get("C1")
    assert again is not first and again is not None and again.rules.transactions == 2


def test_only_the_most_recently_used_records_stay_decoded() -> None:
    table = table_holding({f"C{n}": record_bytes(n) for n in range(5)}, decoded_kept=2)
    records = {f"C{n}": table.get(f"C{n}") for n in range(5)}

    assert table.get("C4") is records["C4"]
    assert table.get("C3") is records["C3"]
    evicted = table.get("C0")
    assert evicted is not records["C0"]
    assert evicted is not None and evicted.rules.transactions == 0
    assert table.get("missing") is None


def test_the_worker_keeps_as_many_records_decoded_as_configured(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, decoded_records_kept=7, data_dir=tmp_path)
    built = build_app(
        settings,
        engine=build_rule_engine(settings),
        customers=CustomerDirectory(None),
        registry=CollectorRegistry(),
    )
    assert built.customer_table.decoded_kept == 7


def test_size_counts_entries_and_encoded_bytes() -> None:
    values = {f"C{n}": record_bytes(n) for n in range(3)}
    table = table_holding(values, decoded_kept=10)

    assert table.entries() == 3
    assert table.encoded_bytes() == sum(len(raw) for raw in values.values())


def test_the_size_follows_every_way_the_store_changes() -> None:
    # Faust recovers with update() and a None for each tombstone, then pops the deleted
    # and revoked keys; the flush sets keys; the test takes each other way as well.
    values = SizedValues({b"A": b"12345"})
    assert values.total == 5

    def check() -> None:
        assert values.total == sum(len(raw) for raw in values.values() if raw is not None)

    values[b"B"] = b"123"
    values[b"A"] = b"1"  # replaced: only the new length counts
    check()
    values.update([(b"C", b"1234567"), (b"D", None)])
    values.update({b"E": b"12"})
    check()
    assert values.pop(b"D") is None and values.pop(b"missing", b"x") == b"x"
    del values[b"E"]
    check()
    with pytest.raises(KeyError):
        values.pop(b"missing")
    assert values.setdefault(b"B", b"ignored") == b"123"
    assert values.setdefault(b"F", b"12") == b"12"
    check()
    values.popitem()
    check()
    assert values.total > 0
    values.clear()
    assert values.total == 0 and not values


def test_the_size_is_kept_through_the_tables_own_writes() -> None:
    table = table_holding({"C1": record_bytes(1)}, decoded_kept=10)
    table.table.data[b"C2"] = record_bytes(22)  # as Faust's recovery writes the store
    table.table.data.pop(b"C1")  # as it drops a revoked partition's keys
    assert table.encoded_bytes() == len(record_bytes(22))

    async def scenario() -> None:
        record = table.get("C2")
        assert record is not None
        record.rules.transactions = 12345
        table.stage({"C2": record, "C3": CustomerRecord.new(TZ)})
        table.flush()

    asyncio.run(scenario())
    assert table.encoded_bytes() == sum(len(raw) for raw in table.table.data.values())
    assert table.entries() == 2


def test_a_staged_record_is_read_back_until_flushed_even_beyond_the_decoded_ones() -> None:
    table = table_holding({"C1": record_bytes(1), "C2": record_bytes(2)}, decoded_kept=1)

    async def scenario() -> None:
        record = table.get("C1")
        assert record is not None
        record.rules.transactions = 5
        stored = table.stage({"C1": record})
        # C2 pushes C1 out of the decoded records; the staged C1 is still the one read.
        assert table.get("C2") is not None
        assert table.get("C1") is record
        assert table.table.data[b"C1"] == record_bytes(1), "not written before a flush"
        assert not stored.done()
        stored.cancel()  # one waiter giving up does not cancel the others' flush
        assert table.flush_due()

    asyncio.run(scenario())


def test_flush_is_due_after_its_time_or_its_number_of_stages_or_once_quiet() -> None:
    by_stages = table_holding({}, decoded_kept=10, flush_after_seconds=3600.0, flush_after_stages=3)
    by_time = table_holding({}, decoded_kept=10, flush_after_seconds=0.05, flush_after_stages=100)
    by_quiet = table_holding({}, decoded_kept=10, flush_after_stages=100, flush_when_quiet_for=0.5)

    async def scenario() -> list[bool]:
        due = [by_stages.flush_due(), by_time.flush_due()]
        for n in range(2):
            for table in (by_stages, by_time):
                table.stage({f"C{n}": CustomerRecord.new(TZ)})
        due += [by_stages.flush_due(), by_time.flush_due()]
        for table in (by_stages, by_time):
            table.stage({"C9": CustomerRecord.new(TZ)})
        due += [by_stages.flush_due(), by_time.flush_due()]
        await asyncio.sleep(0.06)
        due.append(by_time.flush_due())
        return due

    assert asyncio.run(scenario()) == [False, False, False, False, True, False, True]

    async def quiet() -> list[bool]:
        due = [by_quiet.flush_due()]
        for n in range(4):
            # Batches staged closer together than the quiet time: not due however long.
            by_quiet.stage({f"C{n}": CustomerRecord.new(TZ)})
            await asyncio.sleep(0.05)
            due.append(by_quiet.flush_due())
        await asyncio.sleep(0.5)
        due.append(by_quiet.flush_due())
        return due

    assert asyncio.run(quiet()) == [False, False, False, False, False, True]


def test_abandoned_records_fail_their_batches_and_are_read_again_from_the_table() -> None:
    table = table_holding({"C1": record_bytes(1)}, decoded_kept=10, flush_after_seconds=0.0)

    async def scenario() -> None:
        record = table.get("C1")
        assert record is not None
        record.rules.transactions = 7
        stored = table.stage({"C1": record})
        table.abandon_staged(RuntimeError("a batch failed half-way"))
        with pytest.raises(RuntimeError, match="half-way"):
            await stored
        again = table.get("C1")
        assert again is not record and again is not None and again.rules.transactions == 1
        assert not table.flush_due()

    asyncio.run(scenario())


def test_a_flush_writes_nothing_when_a_delivery_staged_with_the_records_failed() -> None:
    # The table's changelog here has no producer: reaching it would fail differently.
    table = table_holding({"C1": record_bytes(1)}, decoded_kept=10, flush_after_seconds=0.0)

    async def scenario() -> None:
        record = table.get("C1")
        assert record is not None
        record.rules.transactions = 2
        refused = asyncio.get_running_loop().create_future()
        refused.set_exception(ConnectionRefusedError("the alert was not delivered"))
        first = table.stage({"C1": record}, after=[refused])
        second = table.stage({"C1": record})
        table.flush()
        for stored in (first, second):
            with pytest.raises(ConnectionRefusedError, match="not delivered"):
                await stored

    asyncio.run(scenario())


@pytest.mark.integration
def test_a_flush_writes_each_staged_customer_once_with_its_latest_record(
    broker: EmbeddedBroker,
) -> None:
    topic = f"customer-table-{uuid.uuid4().hex[:8]}"
    partitions = 2

    async def write() -> tuple[bool, bool]:
        await ensure_topics(broker.bootstrap, [topic], partitions, 1)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            app = faust.App("customer-table-flush-test", store="memory://")
            faust_table = faust.Table(app, name="state", key_type=bytes, value_type=bytes)
            changelog = ChangelogBatches(lambda: producer, topic, partitions)
            table = CustomerTable(faust_table, TZ, changelog)
            records = {f"C{n}": CustomerRecord.new(TZ) for n in range(6)}
            waiting = []
            for batch in range(3):  # three batches change every customer
                for record in records.values():
                    record.rules.transactions = batch + 1
                waiting.append(table.stage(records))
            before_flush = any(future.done() for future in waiting)
            table.flush()
            await asyncio.wait_for(asyncio.gather(*waiting), 30)
            return before_flush, table.get("C3") is records["C3"]
        finally:
            await producer.stop()

    done_before_flush, still_decoded = asyncio.run(write())
    assert not done_before_flush
    assert still_decoded
    written = consume_all(broker, topic, expected=6)
    assert sorted(r.key for r in written) == [f"C{n}".encode() for n in range(6)]
    assert {r.value for r in written} == {record_bytes(3)}
