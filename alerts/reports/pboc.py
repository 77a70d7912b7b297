"""PBoC XML: large-value messages (HVTR) and suspicious messages (BSTR).

The nesting follows the V1.0 interface specification; every tag name and code comes from
``pboc_tags.toml`` (:class:`alerts.reports.config.PbocTags`). ``check_pboc`` is the
structural check each message passes before it is written: it parses, has the expected
root, and every mandatory element is present and non-empty.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import tzinfo

from alerts.reports.config import Institution, PbocTags, alpha3_countries
from alerts.reports.entries import (
    LargeValueEntry,
    ReportParty,
    ReportTransaction,
    SuspiciousEntry,
)
from alerts.reports.xmltext import amount_text, child, to_bytes
from core.errors import InvalidInput


def render_large_value(
    entries: Sequence[LargeValueEntry],
    *,
    tags: PbocTags,
    institution: Institution,
    tz: tzinfo,
) -> bytes:
    """An HVTR message: one CATI per customer and day, one HTCR per criterion met."""
    t = tags.tag
    root = ET.Element(t("large_value_root"))
    header = child(root, t("header"))
    child(header, t("institution_code"), institution.pboc_code)
    by_customer_day: dict[tuple[str, str], list[LargeValueEntry]] = {}
    for entry in entries:
        key = (entry.bank_day.isoformat(), entry.customer.customer_id)
        by_customer_day.setdefault(key, []).append(entry)
    child(header, t("customer_count"), str(len({key[1] for key in by_customer_day})))
    days = child(root, t("customer_days"))
    for seq, (_key, group) in enumerate(sorted(by_customer_day.items()), start=1):
        party = group[0].customer
        cati = child(days, t("customer_day"), seqno=str(seq))
        customer = child(cati, t("customer"))
        child(customer, t("customer_number"), party.customer_id)
        nationalities = child(customer, t("nationalities"))
        child(nationalities, t("nationality"), _alpha3(party), seqno="1")
        child(customer, t("occupation"), tags.code("occupation", party.type))
        child(cati, t("day"), group[0].bank_day.strftime("%Y%m%d"))
        criteria = child(cati, t("criteria"))
        for criterion_seq, entry in enumerate(group, start=1):
            htcr = child(criteria, t("criterion"), seqno=str(criterion_seq))
            child(htcr, t("criterion_code"), tags.code("criterion", entry.criterion))
            child(htcr, t("transaction_count"), str(len(entry.transactions)))
            identities = child(htcr, t("identities"))
            ccif = child(identities, t("identity"), seqno="1")
            _identity(
                ccif, tags, party, name="customer_name", id_type="id_type", number="id_number"
            )
            listed = child(ccif, t("large_value_transactions"))
            for tx_seq, tx in enumerate(entry.transactions, start=1):
                tsdt = child(listed, t("large_value_transaction"), seqno=str(tx_seq))
                _transaction_blocks(tsdt, tags, institution, party, tx, tz, suspicious=False)
    return to_bytes(root)


def render_suspicious(
    entry: SuspiciousEntry,
    *,
    tags: PbocTags,
    institution: Institution,
    tz: tzinfo,
    submission_count: int = 1,
    original_file: str | None = None,
) -> bytes:
    """A BSTR message for one STR (one case approved for filing)."""
    t = tags.tag
    na = tags.unavailable
    root = ET.Element(t("suspicious_root"))
    header = child(root, t("header"))
    child(header, t("institution_code"), institution.pboc_code)
    child(header, t("report_count"), entry.case_ref)
    child(header, t("urgency"), tags.code("urgency", entry.severity))
    child(header, t("submission_count"), str(submission_count))
    child(header, t("original_file"), original_file or na)
    child(header, t("reporting_direction"), str(tags.codes["reporting_direction"]))
    child(header, t("trigger_point"), str(tags.codes["trigger_point"]))
    child(header, t("fund_flows"), entry.fund_flows)
    child(header, t("analysis"), entry.analysis)
    crimes = child(header, t("crime_types"))
    for seq, code in enumerate(_codes(tags, "crime_type", entry.detectors), start=1):
        child(crimes, t("crime_type"), code, seqno=str(seq))
    features = child(header, t("features"))
    for seq, code in enumerate(_codes(tags, "feature", entry.detectors), start=1):
        child(features, t("feature"), code, seqno=str(seq))
    child(header, t("subject_count"), "1")
    child(header, t("suspicious_transaction_count"), str(len(entry.transactions)))
    child(header, t("filer"), institution.filer)
    party = entry.customer
    subjects = child(root, t("subjects"))
    seif = child(subjects, t("subject"), seqno="1")
    child(seif, t("customer_number"), party.customer_id)
    child(seif, t("subject_occupation"), tags.code("occupation", party.type))
    identities = child(seif, t("subject_identities"))
    siif = child(identities, t("subject_identity"), seqno="1")
    _identity(
        siif, tags, party, name="subject_name", id_type="subject_id_type", number="subject_id"
    )
    nationalities = child(seif, t("subject_nationalities"))
    child(nationalities, t("subject_nationality"), _alpha3(party), seqno="1")
    listed = child(root, t("suspicious_transactions"))
    for seq, tx in enumerate(entry.transactions, start=1):
        stif = child(listed, t("suspicious_transaction"), seqno=str(seq))
        _transaction_blocks(stif, tags, institution, party, tx, tz, suspicious=True)
    return to_bytes(root)


def render_no_suspicious(*, tags: PbocTags, institution: Institution, period: str) -> bytes:
    """A BSTR that says the period has no STR (no subjects, no transactions)."""
    t = tags.tag
    root = ET.Element(t("suspicious_root"))
    header = child(root, t("header"))
    child(header, t("institution_code"), institution.pboc_code)
    child(header, t("analysis"), f"No suspicious transaction reports for {period} (empty period).")
    child(header, t("subject_count"), "0")
    child(header, t("suspicious_transaction_count"), "0")
    child(root, t("subjects"))
    child(root, t("suspicious_transactions"))
    return to_bytes(root)


def check_pboc(document: bytes, *, tags: PbocTags, kind: str) -> list[str]:
    """Problems of a PBoC message: unparsable, wrong root, or a mandatory element missing."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        return [f"not well-formed XML: {exc}"]
    expected = tags.tag("large_value_root" if kind == "large_value" else "suspicious_root")
    if root.tag != expected:
        return [f"root is {root.tag}, expected {expected}"]
    problems = []
    for parent_name, children in sorted(tags.mandatory.items()):
        parent_tag = tags.tag(parent_name)
        parents = [root] if root.tag == parent_tag else list(root.iter(parent_tag))
        for index, parent in enumerate(parents, start=1):
            for name in children:
                element = parent.find(tags.tag(name))
                if element is None:
                    problems.append(f"{parent_tag} #{index}: {tags.tag(name)} is missing")
                elif (
                    len(element) == 0
                    and not (element.text or "").strip()
                    and name not in _MAY_BE_EMPTY
                ):
                    problems.append(f"{parent_tag} #{index}: {tags.tag(name)} is empty")
    return problems


# The lists of an empty period are empty, and the message says so.
_MAY_BE_EMPTY = frozenset({"customer_days", "subjects", "suspicious_transactions"})


def _identity(
    parent: ET.Element, tags: PbocTags, party: ReportParty, *, name: str, id_type: str, number: str
) -> None:
    t = tags.tag
    child(parent, t(name), party.name)
    child(parent, t(id_type), tags.code("id_type", party.id_type))
    child(parent, t("other_id_type"), tags.unavailable)
    child(parent, t(number), party.id_number)


def _transaction_blocks(
    parent: ET.Element,
    tags: PbocTags,
    institution: Institution,
    party: ReportParty,
    tx: ReportTransaction,
    tz: tzinfo,
    *,
    suspicious: bool,
) -> None:
    t = tags.tag
    na = tags.unavailable
    branch = child(parent, t("branch"))
    child(branch, t("branch_name"), institution.branch_name)
    child(branch, t("branch_region"), institution.branch_region)
    if suspicious:
        customer = child(parent, t("transaction_customer"))
        _identity(
            customer, tags, party, name="customer_name", id_type="id_type", number="id_number"
        )
        child(customer, t("customer_number"), party.customer_id)
    account = child(parent, t("account"))
    child(account, t("account_type"), tags.code("account_type", party.type))
    child(account, t("account_number"), tx.account_id)
    info = child(parent, t("transaction"))
    child(info, t("time"), tx.at.astimezone(tz).strftime("%Y%m%d%H%M%S"))
    child(info, t("place"), institution.transaction_place)
    child(info, t("business_id"), tx.tx_id)
    child(info, t("method"), tags.code("method", tx.channel))
    child(info, t("debit_credit"), tags.code("debit_credit", tx.direction))
    child(info, t("source_and_use" if suspicious else "purpose"), tx.purpose or na)
    child(info, t("currency"), tx.currency)
    child(info, t("amount"), amount_text(tx.amount))
    if not suspicious:
        child(info, t("amount_cny"), amount_text(tx.amount_cny))
        child(info, t("amount_usd"), amount_text(tx.amount_usd))
    counterparty = child(parent, t("counterparty"))
    child(counterparty, t("counterparty_institution_name"), tx.counterparty_institution or na)
    child(counterparty, t("counterparty_institution_code"), tx.counterparty_institution_code or na)
    child(counterparty, t("counterparty_name"), tx.counterparty_name or na)
    child(counterparty, t("counterparty_id_type"), na)
    child(counterparty, t("counterparty_id"), tx.counterparty_id or na)
    child(counterparty, t("counterparty_account_type"), na)
    child(counterparty, t("counterparty_account"), tx.counterparty_account or na)


def _alpha3(party: ReportParty) -> str:
    code = alpha3_countries().get(party.country)
    if code is None:
        raise InvalidInput(f"customer {party.customer_id}: country {party.country!r} is unknown")
    return code


def _codes(tags: PbocTags, table: str, detectors: Sequence[str]) -> list[str]:
    return sorted({tags.code(table, detector) for detector in detectors}) or [
        tags.code(table, "default")
    ]


__all__ = ["check_pboc", "render_large_value", "render_no_suspicious", "render_suspicious"]
