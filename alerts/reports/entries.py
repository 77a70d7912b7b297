"""Report entries built from the case store: what a report file says, before any format.

Large-value entries come from the large-value report records: one entry per customer,
bank-local day and criterion (Order No. 3 Art. 6: one report per criterion met), listing
the union of the records' transactions. Suspicious entries come from the STR records of
cases compliance approved for filing (four eyes). Every problem that would make a report
incomplete (an unknown customer, missing identity data, a transaction not in the store,
a rule without a criterion) is collected and raised together, naming what is missing by
id and field: never by the customer's name or ID number.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.audit import case_ref
from alerts.database import (
    AlertRow,
    CaseRow,
    CustomerRow,
    LargeValueReportRow,
    NoteRow,
    SuspiciousReportRow,
)
from alerts.reports.config import PbocTags
from alerts.transactions import StoredTransaction, transactions_by_id
from core.errors import InvalidInput

IDENTITY_FIELDS = ("name", "id_type", "id_number", "country")
# Problems listed in one error message; the rest are counted.
PROBLEMS_SHOWN = 20


class IncompleteReport(InvalidInput):
    """The records cannot make complete reports; ``problems`` names each gap."""

    def __init__(self, kind: str, problems: Sequence[str]) -> None:
        shown = "; ".join(problems[:PROBLEMS_SHOWN])
        more = (
            f"; and {len(problems) - PROBLEMS_SHOWN} more" if len(problems) > PROBLEMS_SHOWN else ""
        )
        super().__init__(f"{kind} reports are incomplete, nothing was exported: {shown}{more}")
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class ReportParty:
    """The customer a report is about, with the identity data the regulator requires."""

    customer_id: str
    name: str
    type: str  # individual | corporate
    id_type: str
    id_number: str
    country: str

    def __repr__(self) -> str:
        # Keep names and ID numbers out of tracebacks and debug output.
        return f"ReportParty({self.customer_id!r})"


@dataclass(frozen=True, slots=True)
class ReportTransaction:
    """One transaction as the reports list it; amounts are exact decimals."""

    tx_id: str
    at: datetime
    account_id: str
    direction: str  # in (credit) | out (debit)
    channel: str
    currency: str
    amount: Decimal
    amount_cny: Decimal
    amount_usd: Decimal
    purpose: str | None
    counterparty_id: str | None
    counterparty_name: str | None
    counterparty_country: str | None
    counterparty_account: str | None
    counterparty_institution: str | None
    counterparty_institution_code: str | None


@dataclass(frozen=True, slots=True)
class LargeValueEntry:
    """One customer's large-value transactions of one bank-local day under one criterion."""

    customer: ReportParty
    bank_day: date
    criterion: str
    detectors: tuple[str, ...]
    record_ids: tuple[int, ...]
    deadline: date
    statuses: tuple[str, ...]
    transactions: tuple[ReportTransaction, ...]

    @property
    def total_cny(self) -> Decimal:
        """The entry's transactions in CNY, summed exactly."""
        return sum((tx.amount_cny for tx in self.transactions), Decimal(0))


@dataclass(frozen=True, slots=True)
class SuspiciousEntry:
    """One STR: a case approved for filing, its subject, transactions and analysis."""

    record_id: int
    case_id: int
    case_ref: str
    customer: ReportParty
    severity: str
    decided_at: datetime
    bank_day: date
    deadline: date
    status: str
    detectors: tuple[str, ...]
    reasons: tuple[str, ...]
    assessment: str
    notes: tuple[str, ...]
    proposed_by: str
    approved_by: str
    transactions: tuple[ReportTransaction, ...]

    @property
    def total_cny(self) -> Decimal:
        """The entry's transactions in CNY, summed exactly."""
        return sum((tx.amount_cny for tx in self.transactions), Decimal(0))

    @property
    def fund_flows(self) -> str:
        """The description of the fund flows (PBoC STCB), computed from the transactions."""
        return describe_fund_flows(self.transactions)

    @property
    def analysis(self) -> str:
        """Why the activity is suspicious (PBoC AOSP): reasons, assessment, notes."""
        parts = ["Alerts: " + " | ".join(self.reasons)]
        if self.assessment:
            parts.append("Assessment: " + self.assessment)
        if self.notes:
            parts.append("Notes: " + " | ".join(self.notes))
        return "\n".join(parts)


Entry = LargeValueEntry | SuspiciousEntry


def describe_fund_flows(transactions: Sequence[ReportTransaction]) -> str:
    """Counts and exact CNY totals per direction, channels, counterparties and time span."""
    if not transactions:
        return "No transactions."
    inflow = [tx for tx in transactions if tx.direction == "in"]
    outflow = [tx for tx in transactions if tx.direction == "out"]
    total_in = sum((tx.amount_cny for tx in inflow), Decimal(0))
    total_out = sum((tx.amount_cny for tx in outflow), Decimal(0))
    channels = sorted({tx.channel for tx in transactions})
    counterparties = {tx.counterparty_id for tx in transactions if tx.counterparty_id}
    countries = sorted({tx.counterparty_country for tx in transactions if tx.counterparty_country})
    first, last = transactions[0].at, transactions[-1].at
    text = (
        f"{len(transactions)} transactions from {first.isoformat()} to {last.isoformat()}: "
        f"{len(inflow)} credits totalling {_plain(total_in)} CNY, "
        f"{len(outflow)} debits totalling {_plain(total_out)} CNY; "
        f"channels {', '.join(channels)}; {len(counterparties)} distinct counterparties"
    )
    if countries:
        text += f" in {', '.join(countries)}"
    return text + "."


def large_value_entries(
    session: Session,
    *,
    first: date,
    last: date,
    statuses: Iterable[str],
    pboc: PbocTags,
) -> list[LargeValueEntry]:
    """The large-value entries of the records with bank day in ``first..last`` and a status."""
    rows = list(
        session.scalars(
            select(LargeValueReportRow)
            .where(
                LargeValueReportRow.bank_day >= first,
                LargeValueReportRow.bank_day <= last,
                LargeValueReportRow.status.in_(list(statuses)),
            )
            .order_by(LargeValueReportRow.id)
        )
    )
    problems: list[str] = []
    groups: dict[tuple[date, str, str], list[LargeValueReportRow]] = defaultdict(list)
    criteria = pboc.codes.get("detector_criterion", {})
    for row in rows:
        criterion = criteria.get(row.detector)
        if criterion is None:
            problems.append(
                f"large-value record {row.id}: rule {row.detector} has no criterion in "
                "pboc_tags.toml [codes.detector_criterion]"
            )
            continue
        groups[(row.bank_day, row.customer_id, criterion)].append(row)
    parties = _parties(session, {row.customer_id for row in rows}, problems)
    stored = transactions_by_id(session, (tx for row in rows for tx in row.tx_ids))
    entries = []
    for (day, customer_id, criterion), members in sorted(groups.items()):
        transactions = _transactions(
            [tx for row in members for tx in row.tx_ids],
            stored,
            problems,
            f"large-value record(s) {', '.join(str(row.id) for row in members)}",
        )
        party = parties.get(customer_id)
        if party is None:
            continue
        entries.append(
            LargeValueEntry(
                customer=party,
                bank_day=day,
                criterion=criterion,
                detectors=tuple(sorted({row.detector for row in members})),
                record_ids=tuple(row.id for row in members),
                deadline=min(row.deadline for row in members),
                statuses=tuple(sorted({row.status for row in members})),
                transactions=transactions,
            )
        )
    if problems:
        raise IncompleteReport("large-value", problems)
    return entries


def suspicious_entries(
    session: Session,
    *,
    first: date,
    last: date,
    statuses: Iterable[str],
) -> list[SuspiciousEntry]:
    """The STR entries of the STR records decided on a bank day in ``first..last``."""
    records = list(
        session.scalars(
            select(SuspiciousReportRow)
            .where(
                SuspiciousReportRow.bank_day >= first,
                SuspiciousReportRow.bank_day <= last,
                SuspiciousReportRow.status.in_(list(statuses)),
            )
            .order_by(SuspiciousReportRow.id)
        )
    )
    problems: list[str] = []
    cases = {
        case.id: case
        for case in session.scalars(
            select(CaseRow).where(CaseRow.id.in_([record.case_id for record in records]))
        )
    }
    parties = _parties(session, {case.customer_id for case in cases.values()}, problems)
    alerts: dict[int, list[AlertRow]] = defaultdict(list)
    for alert in session.scalars(
        select(AlertRow).where(AlertRow.case_id.in_(list(cases))).order_by(AlertRow.id)
    ):
        alerts[alert.case_id].append(alert)
    notes: dict[int, list[str]] = defaultdict(list)
    for note in session.scalars(
        select(NoteRow).where(NoteRow.case_id.in_(list(cases))).order_by(NoteRow.id)
    ):
        notes[note.case_id].append(note.body)
    stored = transactions_by_id(
        session, (tx for rows in alerts.values() for alert in rows for tx in alert.tx_ids)
    )
    entries = []
    for record in records:
        case = cases[record.case_id]
        ref = case_ref(case.id)
        transactions = _transactions(
            [tx for alert in alerts[case.id] for tx in alert.tx_ids], stored, problems, ref
        )
        if not transactions:
            problems.append(f"{ref}: no transactions to report")
        party = parties.get(case.customer_id)
        if party is None:
            continue
        entries.append(
            SuspiciousEntry(
                record_id=record.id,
                case_id=case.id,
                case_ref=ref,
                customer=party,
                severity=case.severity,
                decided_at=record.decided_at,
                bank_day=record.bank_day,
                deadline=record.deadline,
                status=record.status,
                detectors=tuple(sorted({alert.detector for alert in alerts[case.id]})),
                reasons=tuple(r for alert in alerts[case.id] for r in alert.reasons),
                assessment=case.assessment or "",
                notes=tuple(notes[case.id]),
                proposed_by=case.report_proposed_by or "",
                approved_by=case.report_approved_by or "",
                transactions=transactions,
            )
        )
    if problems:
        raise IncompleteReport("suspicious", problems)
    return entries


def _parties(
    session: Session, customer_ids: set[str], problems: list[str]
) -> dict[str, ReportParty]:
    rows = {
        row.customer_id: row
        for row in session.scalars(
            select(CustomerRow).where(CustomerRow.customer_id.in_(sorted(customer_ids)))
        )
    }
    parties = {}
    for customer_id in sorted(customer_ids):
        row = rows.get(customer_id)
        if row is None:
            problems.append(
                f"customer {customer_id}: not in the case store (import the customers file)"
            )
            continue
        missing = [field for field in IDENTITY_FIELDS if not (getattr(row, field) or "").strip()]
        if missing:
            problems.append(f"customer {customer_id}: missing {', '.join(missing)}")
            continue
        parties[customer_id] = ReportParty(
            customer_id=row.customer_id,
            name=row.name.strip(),
            type=row.type,
            id_type=row.id_type.strip(),
            id_number=row.id_number.strip(),
            country=row.country.strip().upper(),
        )
    return parties


def _transactions(
    tx_ids: Sequence[str],
    stored: dict[str, StoredTransaction],
    problems: list[str],
    owner: str,
) -> tuple[ReportTransaction, ...]:
    missing = sorted({tx for tx in tx_ids if tx not in stored})
    if missing:
        problems.append(
            f"{owner}: transaction(s) {', '.join(missing[:5])} not in the case store "
            "(back-fill them with amlwatch backtest --persist)"
        )
    found = [_transaction(stored[tx]) for tx in sorted(set(tx_ids) - set(missing))]
    return tuple(sorted(found, key=lambda tx: (tx.at, tx.tx_id)))


def _transaction(item: StoredTransaction) -> ReportTransaction:
    tx = item.transaction
    extra = tx.extra

    def text(key: str) -> str | None:
        value = extra.get(key)
        return str(value) if value not in (None, "") else None

    return ReportTransaction(
        tx_id=tx.tx_id,
        at=tx.timestamp,
        account_id=tx.account_id,
        direction=tx.direction.value,
        channel=tx.channel.value,
        currency=tx.currency,
        amount=tx.amount,
        amount_cny=item.amount_cny,
        amount_usd=item.amount_usd,
        purpose=tx.description,
        counterparty_id=tx.counterparty_id,
        counterparty_name=tx.counterparty_name,
        counterparty_country=tx.counterparty_country,
        # The contract's counterparty_id is the counterparty's account where a bank
        # knows one; feeds may say more in extra fields.
        counterparty_account=text("counterparty_account") or tx.counterparty_id,
        counterparty_institution=text("counterparty_institution"),
        counterparty_institution_code=text("counterparty_institution_code"),
    )


def _plain(value: Decimal) -> str:
    return format(value, "f")


__all__ = [
    "Entry",
    "IncompleteReport",
    "LargeValueEntry",
    "ReportParty",
    "ReportTransaction",
    "SuspiciousEntry",
    "describe_fund_flows",
    "large_value_entries",
    "suspicious_entries",
]
