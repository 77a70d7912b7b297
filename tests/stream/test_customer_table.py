"""The customer table keeps recent records decoded, never a stale one, and reports its size."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import faust

from stream.customer_table import ChangelogBatches, CustomerRecord, CustomerTable

TZ = ZoneInfo("Asia/Shanghai")


def table_holding(values: dict[str, bytes], *, decoded_kept: int) -> CustomerTable:
    app = faust.App("customer-table-test", store="memory://")
    faust_table = faust.Table(app, name="state", key_type=bytes, value_type=bytes)
    # Values put straight into the store, as changelog recovery does.
    for customer_id, raw in values.items():
        faust_table.data[customer_id.encode()] = raw
    # These tests read only: a changelog that is never written to.
    changelog = ChangelogBatches(lambda: None, "state-changelog", 1)
    return CustomerTable(faust_table, TZ, changelog, decoded_kept=decoded_kept)


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


def test_size_counts_entries_and_encoded_bytes() -> None:
    values = {f"C{n}": record_bytes(n) for n in range(3)}
    table = table_holding(values, decoded_kept=10)

    assert table.entries() == 3
    assert table.encoded_bytes() == sum(len(raw) for raw in values.values())
