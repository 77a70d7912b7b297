"""The audit chain: written with every change, verified, exported, and tamper-evident."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from alerts.audit import (
    GENESIS_HASH,
    appends_in_one_insert,
    export_audit,
    record_event,
    verify_audit_chain,
)
from tests.alerts.conftest import T0


@pytest.fixture
def five_events(session: Session) -> None:
    for n in range(1, 6):
        record_event(
            session,
            actor="u1",
            role="compliance",
            action="login" if n % 2 else "export",
            target=f"thing {n}",
            before={"n": n - 1},
            after={"n": n, "note": "中文"},
            at=T0 + timedelta(minutes=n),
        )
    session.commit()


def test_events_chain_and_verify(session: Session, five_events: None) -> None:
    verdict = verify_audit_chain(session)
    assert verdict.ok and verdict.count == 5 and verdict.broken_seq is None
    first, second = session.execute(
        text("SELECT prev_hash, hash FROM audit_events ORDER BY seq LIMIT 2")
    ).all()
    assert first[0] == GENESIS_HASH and second[0] == first[1]


def test_empty_chain_is_ok(session: Session) -> None:
    assert verify_audit_chain(session).ok and verify_audit_chain(session).count == 0


def test_edit_is_found(session: Session, five_events: None) -> None:
    session.execute(text("UPDATE audit_events SET target = 'thing X' WHERE seq = 3"))
    session.commit()
    verdict = verify_audit_chain(session)
    assert not verdict.ok and verdict.broken_seq == 3 and "altered" in verdict.message


def test_delete_is_found(session: Session, five_events: None) -> None:
    session.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    session.commit()
    verdict = verify_audit_chain(session)
    assert not verdict.ok and verdict.broken_seq == 2 and "missing" in verdict.message


def test_deleting_the_last_event_is_found(session: Session, five_events: None) -> None:
    session.execute(text("DELETE FROM audit_events WHERE seq = 5"))
    session.commit()
    verdict = verify_audit_chain(session)
    assert not verdict.ok and verdict.broken_seq == 5


def test_reorder_is_found(session: Session, five_events: None) -> None:
    session.execute(text("UPDATE audit_events SET seq = -1 WHERE seq = 3"))
    session.execute(text("UPDATE audit_events SET seq = 3 WHERE seq = 4"))
    session.execute(text("UPDATE audit_events SET seq = 4 WHERE seq = -1"))
    session.commit()
    verdict = verify_audit_chain(session)
    assert not verdict.ok and verdict.broken_seq == 3


def test_export_writes_json_lines_for_the_period(session: Session, five_events: None) -> None:
    out = io.StringIO()
    written = export_audit(
        session, start=T0 + timedelta(minutes=2), end=T0 + timedelta(minutes=4), out=out
    )
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert written == 2 and [line["seq"] for line in lines] == [2, 3]
    assert lines[1]["prev_hash"] == lines[0]["hash"] and lines[0]["after"]["note"] == "中文"


def test_a_rolled_back_change_leaves_no_event(session: Session, five_events: None) -> None:
    record_event(
        session, actor="u", role="admin", action="x", target="y", before=None, after=None, at=T0
    )
    session.rollback()
    assert verify_audit_chain(session).count == 5
    record_event(
        session, actor="u", role="admin", action="x", target="y", before=None, after=None, at=T0
    )
    session.commit()
    assert verify_audit_chain(session).ok and verify_audit_chain(session).count == 6


def test_events_after_a_rolled_back_savepoint_continue_the_chain(
    session: Session, five_events: None
) -> None:
    def append(target: str) -> None:
        record_event(
            session,
            actor="u",
            role="admin",
            action="x",
            target=target,
            before=None,
            after=None,
            at=T0,
        )

    append("kept 6")
    with pytest.raises(RuntimeError), session.begin_nested():
        append("undone 7")
        append("undone 8")
        raise RuntimeError("the change is refused")
    append("kept 7")
    session.commit()

    verdict = verify_audit_chain(session)
    assert verdict.ok and verdict.count == 7
    targets = session.scalars(text("SELECT target FROM audit_events WHERE seq > 5 ORDER BY seq"))
    assert list(targets) == ["kept 6", "kept 7"]


def test_events_appended_in_one_insert_chain_on_from_the_rest(
    session: Session, five_events: None
) -> None:
    def append(target: str) -> None:
        record_event(
            session, actor="u", role="admin", action="x", target=target, before=None,
            after={"n": target}, at=T0,
        )  # fmt: skip

    with appends_in_one_insert(session):
        append("batched 6")
        append("batched 7")
        # Not written yet: the block writes them as it ends.
        assert session.scalar(text("SELECT count(*) FROM audit_events")) == 5
    append("single 8")
    with pytest.raises(RuntimeError), session.begin_nested(), appends_in_one_insert(session):
        append("undone 9")
        raise RuntimeError("the batch is refused")
    with appends_in_one_insert(session):
        append("batched 9")
    session.commit()

    verdict = verify_audit_chain(session)
    assert verdict.ok and verdict.count == 9
    targets = session.scalars(text("SELECT target FROM audit_events WHERE seq > 5 ORDER BY seq"))
    assert list(targets) == ["batched 6", "batched 7", "single 8", "batched 9"]


def test_blocks_of_appends_in_one_insert_do_not_nest(session: Session) -> None:
    outer = appends_in_one_insert(session)
    with outer, pytest.raises(RuntimeError, match="do not nest"), appends_in_one_insert(session):
        pass
