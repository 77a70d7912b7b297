"""The append-only, hash-chained audit log.

Every event stores its sequence number, the previous event's hash and the SHA-256 of
its own canonical JSON form (sorted keys, no whitespace, previous hash included), so
editing, deleting or reordering any event breaks the chain from that event on.

Appends are serialised on the one-row ``audit_chain_head`` table: PostgreSQL locks it
with ``SELECT ... FOR UPDATE`` until the writing transaction ends, and SQLite writers
are serialised by their ``BEGIN IMMEDIATE`` transactions. Writing service functions
take that lock *first* (:func:`lock_chain`), before touching any other row, so two
writers never hold one lock each while waiting for the other's.

Within one transaction the head is read once, when the lock is taken, and kept on the
session: the lock keeps other writers out until the transaction ends, so the head only
changes through this session's own appends.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TextIO

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from alerts.actors import Actor
from alerts.database import AuditChainHeadRow, AuditEventRow, CaseRow

GENESIS_HASH = "0" * 64
_HEAD_ID = 1
# session.info key: (the transaction that took the chain lock, the head it read).
_LOCKED_HEAD = "amlwatch.audit.locked_head"
# session.info key: the rows appended inside :func:`appends_in_one_insert`, not yet written.
_PENDING_ROWS = "amlwatch.audit.pending_rows"
# What an event's hash covers: every column but the hash.
_HASHED_FIELDS = ("seq", "at", "actor", "role", "action", "target", "before", "after", "prev_hash")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One recorded action; ``before``/``after`` are JSON-ready snapshots of what changed."""

    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as exported."""
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "target": self.target,
            "before": self.before,
            "after": self.after,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class ChainVerification:
    """The verdict on the chain: OK with the event count, or the first broken event."""

    ok: bool
    count: int
    broken_seq: int | None
    message: str


def lock_chain(session: Session) -> None:
    """Take the audit chain's append lock for the rest of this transaction."""
    _locked_head(session)


def record_event(
    session: Session,
    *,
    actor: str,
    role: str,
    action: str,
    target: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    at: datetime,
) -> AuditEvent:
    """Append one event in the caller's transaction (it commits or rolls back with it).

    The row is written at the session's next flush, together with the events appended
    before it: a batch of appends costs one insert and one head update, not two each.
    Inside :func:`appends_in_one_insert` it is written when that block ends instead.
    """
    head = _locked_head(session)
    values: dict[str, Any] = {
        "seq": head.seq + 1,
        "at": at.astimezone(UTC),
        "actor": actor,
        "role": role,
        "action": action,
        "target": target,
        "before": _plain(before),
        "after": _plain(after),
        "prev_hash": head.hash,
    }
    values["hash"] = _digest(values)
    pending: list[dict[str, Any]] | None = session.info.get(_PENDING_ROWS)
    if pending is None:
        session.add(AuditEventRow(**values))
    else:
        pending.append(values)
    head.seq, head.hash = values["seq"], values["hash"]
    return AuditEvent(**values)


@contextmanager
def appends_in_one_insert(session: Session) -> Iterator[None]:
    """Write the events appended inside the block with one insert statement as it ends.

    For a batch that appends many events: an ORM object each, flushed through the unit
    of work, cost about as much as the rows the events are about. An exception inside
    drops the block's events with it (the caller's savepoint or transaction rolls back).
    """
    if _PENDING_ROWS in session.info:
        raise RuntimeError("appends_in_one_insert blocks do not nest")
    pending: list[dict[str, Any]] = []
    session.info[_PENDING_ROWS] = pending
    try:
        yield
    finally:
        del session.info[_PENDING_ROWS]
    if pending:
        session.connection().execute(_INSERT_EVENTS, pending)


def audit_case_event(
    session: Session,
    case: CaseRow,
    *,
    actor: Actor,
    action: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    now: datetime,
) -> AuditEvent:
    """Append ``actor``'s event on ``case`` in the caller's transaction, as :func:`record_event`."""
    # The case's id is read only now: a new case has one once it has been flushed, so a
    # batch can defer this call until then.
    return record_event(
        session,
        actor=actor.user_id,
        role=actor.role.value,
        action=action,
        target=case_ref(case.id),
        before=before,
        after=after,
        at=now,
    )


def case_ref(case_id: int) -> str:
    """How people name a case, and the target of its audit events: ``C12``."""
    return f"C{case_id}"


def event_hash(row: AuditEventRow) -> str:
    """SHA-256 of the event's canonical JSON form (which includes the previous hash)."""
    return _digest({name: getattr(row, name) for name in _HASHED_FIELDS})


def _digest(values: Mapping[str, Any]) -> str:
    """:func:`event_hash` of an event's column values (``hash`` itself left out)."""
    canonical = {name: values[name] for name in _HASHED_FIELDS}
    canonical["at"] = values["at"].astimezone(UTC).isoformat()
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_audit_chain(session: Session) -> ChainVerification:
    """Walk the chain from the start; the first edited, missing or reordered event, or OK."""
    expected_seq, previous_hash = 1, GENESIS_HASH
    rows = session.scalars(
        select(AuditEventRow).order_by(AuditEventRow.seq).execution_options(yield_per=1000)
    )
    for row in rows:
        if row.seq != expected_seq:
            return _broken(expected_seq, f"event {expected_seq} is missing (next is {row.seq})")
        if row.prev_hash != previous_hash:
            return _broken(
                row.seq,
                f"event {row.seq} does not follow event {row.seq - 1}: "
                "events were deleted or reordered here",
            )
        if event_hash(row) != row.hash:
            return _broken(row.seq, f"event {row.seq} was altered: its content does not match")
        previous_hash = row.hash
        expected_seq += 1
    count = expected_seq - 1
    head = session.scalars(
        select(AuditChainHeadRow)
        .where(AuditChainHeadRow.id == _HEAD_ID)
        .execution_options(populate_existing=True)
    ).one()
    if head.seq != count or head.hash != previous_hash:
        return _broken(count + 1, f"the chain holds {head.seq} events but only {count} are present")
    return ChainVerification(ok=True, count=count, broken_seq=None, message=f"{count} events OK")


def export_audit(session: Session, *, start: datetime, end: datetime, out: TextIO) -> int:
    """Write the events with ``start <= at < end`` to ``out`` as JSON Lines; how many."""
    rows = session.scalars(
        select(AuditEventRow)
        .where(AuditEventRow.at >= start, AuditEventRow.at < end)
        .order_by(AuditEventRow.seq)
        .execution_options(yield_per=1000)
    )
    written = 0
    for row in rows:
        out.write(json.dumps(audit_event(row).to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
        written += 1
    return written


_INSERT_EVENTS = insert(AuditEventRow.metadata.tables[AuditEventRow.__tablename__])

# populate_existing: a head cached by an earlier transaction of this session is stale.
# Built once: every write to the case store starts with it.
_LOCK_HEAD = (
    select(AuditChainHeadRow)
    .where(AuditChainHeadRow.id == _HEAD_ID)
    .with_for_update()
    .execution_options(populate_existing=True)
)


def _locked_head(session: Session) -> AuditChainHeadRow:
    transaction = session.get_transaction()
    locked = session.info.get(_LOCKED_HEAD)
    if locked is not None and transaction is not None and locked[0] is transaction:
        # A savepoint rolled back expires the head, so it reloads as the database has it.
        head: AuditChainHeadRow = locked[1]
        return head
    head = session.scalars(_LOCK_HEAD).one()
    session.info[_LOCKED_HEAD] = (session.get_transaction(), head)
    return head


def _plain(snapshot: Mapping[str, Any] | None) -> dict[str, Any] | None:
    # Exactly what the JSON column gives back, so the hash recomputes from a stored row.
    if snapshot is None:
        return None
    plain: dict[str, Any] = json.loads(json.dumps(dict(snapshot), default=_json_default))
    return plain


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    raise TypeError(f"audit snapshots hold JSON values, not {type(value).__name__}")


def audit_event(row: AuditEventRow) -> AuditEvent:
    """The record of a stored audit event (rows stay inside ``alerts``)."""
    return AuditEvent(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        role=row.role,
        action=row.action,
        target=row.target,
        before=row.before,
        after=row.after,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _broken(seq: int, message: str) -> ChainVerification:
    return ChainVerification(ok=False, count=seq - 1, broken_seq=seq, message=message)


__all__ = [
    "GENESIS_HASH",
    "AuditEvent",
    "ChainVerification",
    "appends_in_one_insert",
    "audit_case_event",
    "audit_event",
    "case_ref",
    "event_hash",
    "export_audit",
    "lock_chain",
    "record_event",
    "verify_audit_chain",
]
