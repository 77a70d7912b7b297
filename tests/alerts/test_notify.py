"""Notifications against real local servers: an HTTP receiver and a minimal SMTP relay."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry

from alerts.notify import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CaseEvent,
    CaseNotice,
    EmailNotifier,
    NotificationDispatcher,
    Notifier,
    WebhookNotifier,
    backoff_delay,
    sign,
    verify_signature,
)
from core.detection import Severity
from core.errors import Conflict, InvalidInput

SECRET = b"s3cret-for-tests"
TINY = 0.01  # seconds: base backoff in tests


def notice(case_id: str = "C12", **changes: object) -> CaseNotice:
    base = CaseNotice(
        event=CaseEvent.OPENED,
        case_id=case_id,
        customer_id="CUST0001",
        manager_id="M07",
        queue="branch-sh-01",
        severity=Severity.HIGH,
        escalation_level=0,
        reasons=("大额现金 / large cash: 3 deposits of CNY 49,000 in 2 days",),
        occurred_at=datetime(2024, 3, 1, 9, 30, tzinfo=UTC),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def count(registry: CollectorRegistry, channel: str, outcome: str) -> float:
    value = registry.get_sample_value(
        "amlwatch_notifications_total", {"channel": channel, "outcome": outcome}
    )
    return value or 0.0


def attempts(registry: CollectorRegistry, channel: str) -> float:
    value = registry.get_sample_value("amlwatch_notification_attempts_total", {"channel": channel})
    return value or 0.0


# --- a real HTTP receiver ---------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """Records every POST; answers the scripted statuses in order, then ``default``."""

    url: str
    requests: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    default: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, request: Received) -> int:
        with self.lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else self.default


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state[0].answer(
                Received(self.path, dict(self.headers.items()), body, time.monotonic())
            )
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.append(Receiver(url=f"http://127.0.0.1:{server.server_port}/hooks/aml?token=t0k"))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def webhook(url: str, registry: CollectorRegistry, **options: object) -> WebhookNotifier:
    settings: dict[str, object] = {"base_delay": TINY, "max_delay": 0.05, "timeout": 5.0}
    settings.update(options)
    return WebhookNotifier(url, SECRET, registry=registry, **settings)  # type: ignore[arg-type]


# --- the notice -------------------------------------------------------------------------------


def test_notice_carries_no_customer_name_or_id_number() -> None:
    names = {f.name for f in dataclasses.fields(CaseNotice)}
    assert names == {
        "event",
        "case_id",
        "customer_id",
        "manager_id",
        "queue",
        "severity",
        "escalation_level",
        "reasons",
        "occurred_at",
    }
    document = json.loads(notice().to_json())
    assert not {"name", "id_number", "id_type"} & set(document)


def test_notice_json_is_canonical_and_delivery_id_stable() -> None:
    body = notice().to_json()
    assert body == notice().to_json()
    document = json.loads(body)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert body == canonical.encode()
    assert document["delivery_id"] == notice().delivery_id
    assert notice().delivery_id != notice(event=CaseEvent.ESCALATED).delivery_id
    assert notice().delivery_id != notice(escalation_level=1).delivery_id


def test_notice_refuses_naive_time() -> None:
    with pytest.raises(InvalidInput, match="timezone-aware"):
        notice(occurred_at=datetime(2024, 3, 1, 9, 30))


# --- signatures -------------------------------------------------------------------------------


def test_signature_verifies_only_with_same_secret_body_and_timestamp() -> None:
    body = notice().to_json()
    now = 1_700_000_000
    signature = sign(SECRET, str(now), body)
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert verify_signature(SECRET, str(now), body, signature, now=now)
    assert not verify_signature(b"another secret", str(now), body, signature, now=now)
    assert not verify_signature(SECRET, str(now), body + b" ", signature, now=now)
    # Replaying the same signature under a new timestamp fails.
    assert not verify_signature(SECRET, str(now + 1), body, signature, now=now)
    # A stale (or far-future) timestamp fails even when correctly signed.
    assert not verify_signature(SECRET, str(now), body, signature, now=now + 301)
    assert verify_signature(SECRET, str(now), body, signature, tolerance=None, now=now + 10**6)
    assert not verify_signature(SECRET, "not-a-number", body, signature, now=now)


def test_empty_secret_and_bad_urls_are_refused() -> None:
    with pytest.raises(InvalidInput, match="secret"):
        sign(b"", "1", b"{}")
    with pytest.raises(InvalidInput, match="secret"):
        WebhookNotifier("http://127.0.0.1:9/", b"")
    with pytest.raises(InvalidInput, match="secret"):
        WebhookNotifier("http://127.0.0.1:9/", "")
    with pytest.raises(InvalidInput, match="URL"):
        WebhookNotifier("ftp://example.org/hook", SECRET)
    with pytest.raises(InvalidInput, match="credentials"):
        WebhookNotifier("https://user:pw@example.org/hook", SECRET)


def test_repr_hides_secret_and_query() -> None:
    text = repr(WebhookNotifier("https://hooks.example.org:8443/x?token=abc", SECRET))
    assert "abc" not in text and SECRET.decode() not in text
    assert "hooks.example.org:8443" in text


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    for retry, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0)]:
        low = backoff_delay(retry, base_delay=0.5, max_delay=30, rand=lambda: 0.0)
        high = backoff_delay(retry, base_delay=0.5, max_delay=30, rand=lambda: 0.999999)
        assert low == pytest.approx(cap / 2)
        assert cap / 2 < high <= cap


# --- webhook delivery -------------------------------------------------------------------------


def test_webhook_delivers_signed_canonical_json(receiver: Receiver) -> None:
    registry = CollectorRegistry()
    sent = notice()
    assert asyncio.run(webhook(receiver.url, registry).deliver(sent)) is True

    (request,) = receiver.requests
    assert request.path == "/hooks/aml?token=t0k"
    assert request.body == sent.to_json()
    assert request.headers[EVENT_HEADER] == "case_opened"
    assert request.headers[DELIVERY_HEADER] == sent.delivery_id
    assert request.headers["Content-Type"].startswith("application/json")
    timestamp = request.headers[TIMESTAMP_HEADER]
    signature = request.headers[SIGNATURE_HEADER]
    assert verify_signature(SECRET, timestamp, request.body, signature)
    assert not verify_signature(b"wrong", timestamp, request.body, signature)
    assert not verify_signature(SECRET, timestamp, request.body.replace(b"C12", b"C13"), signature)
    assert not verify_signature(SECRET, str(int(timestamp) - 1), request.body, signature)
    assert count(registry, "webhook", "delivered") == 1
    assert count(registry, "webhook", "failed") == 0
    assert attempts(registry, "webhook") == 1


def test_webhook_retries_5xx_and_429_with_backoff_then_succeeds(receiver: Receiver) -> None:
    receiver.script = [500, 503, 429]
    registry = CollectorRegistry()
    slept: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(seconds)

    notifier = webhook(
        receiver.url, registry, base_delay=0.02, max_delay=1.0, sleep=recording_sleep
    )
    assert asyncio.run(notifier.deliver(notice())) is True

    assert len(receiver.requests) == 4
    assert len({r.headers[DELIVERY_HEADER] for r in receiver.requests}) == 1
    assert all(
        verify_signature(SECRET, r.headers[TIMESTAMP_HEADER], r.body, r.headers[SIGNATURE_HEADER])
        for r in receiver.requests
    )
    # Exponential, jittered into [cap/2, cap]: caps 0.02, 0.04, 0.08.
    assert len(slept) == 3
    for retry, seconds in enumerate(slept, start=1):
        cap = 0.02 * 2 ** (retry - 1)
        assert cap / 2 <= seconds <= cap
    # The receiver saw the waits (lower bounds only: a busy machine is only ever slower).
    gaps = [b.at - a.at for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert all(gap >= wait * 0.9 for gap, wait in zip(gaps, slept, strict=True))
    assert attempts(registry, "webhook") == 4
    assert count(registry, "webhook", "delivered") == 1
    assert count(registry, "webhook", "failed") == 0


def test_webhook_400_is_permanent_and_not_retried(receiver: Receiver) -> None:
    receiver.default = 400
    registry = CollectorRegistry()
    assert asyncio.run(webhook(receiver.url, registry).deliver(notice())) is False
    assert len(receiver.requests) == 1
    assert attempts(registry, "webhook") == 1
    assert count(registry, "webhook", "failed") == 1
    assert count(registry, "webhook", "delivered") == 0


def test_webhook_5xx_forever_fails_after_max_attempts(receiver: Receiver) -> None:
    receiver.default = 502
    registry = CollectorRegistry()
    assert asyncio.run(webhook(receiver.url, registry, max_attempts=3).deliver(notice())) is False
    assert len(receiver.requests) == 3
    assert count(registry, "webhook", "failed") == 1


def test_dead_url_fails_after_max_attempts() -> None:
    registry = CollectorRegistry()
    notifier = webhook(f"http://127.0.0.1:{closed_port()}/hook", registry, max_attempts=4)
    assert asyncio.run(notifier.deliver(notice())) is False
    assert attempts(registry, "webhook") == 4
    assert count(registry, "webhook", "failed") == 1
    assert count(registry, "webhook", "delivered") == 0


def test_receiver_that_never_answers_times_out_and_is_retried() -> None:
    registry = CollectorRegistry()
    with socket.socket() as silent:  # listens (the kernel completes connects) but never reads
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        notifier = webhook(f"http://127.0.0.1:{port}/", registry, max_attempts=2, timeout=0.2)
        assert asyncio.run(notifier.deliver(notice())) is False
    assert attempts(registry, "webhook") == 2
    assert count(registry, "webhook", "failed") == 1


# --- dispatcher -------------------------------------------------------------------------------


class GatedNotifier:
    """A channel that holds every delivery until the test opens the gate."""

    channel = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.delivered: list[str] = []

    async def deliver(self, notice: CaseNotice) -> bool:
        self.started.set()
        await self.gate.wait()
        self.delivered.append(notice.case_id)
        return True


def test_full_queue_drops_and_counts_without_blocking() -> None:
    registry = CollectorRegistry()

    async def scenario() -> GatedNotifier:
        channel = GatedNotifier()
        dispatcher = NotificationDispatcher([channel], max_queue=2, workers=1, registry=registry)
        await dispatcher.start()
        assert dispatcher.submit(notice("C1"))
        await asyncio.wait_for(channel.started.wait(), 5)  # C1 is in flight, queue empty
        assert dispatcher.submit(notice("C2"))
        assert dispatcher.submit(notice("C3"))
        assert registry.get_sample_value("amlwatch_notification_queue_depth") == 2
        assert dispatcher.submit(notice("C4")) is False  # full: returned at once, not awaited
        assert dispatcher.submit(notice("C5")) is False
        assert count(registry, "gated", "dropped") == 2
        channel.gate.set()
        await dispatcher.stop(timeout=5)
        return channel

    channel = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert channel.delivered == ["C1", "C2", "C3"]
    assert registry.get_sample_value("amlwatch_notification_queue_depth") == 0
    assert count(registry, "gated", "dropped") == 2


def test_stop_drains_the_queue_through_a_real_webhook(receiver: Receiver) -> None:
    receiver.script = [500]  # the first delivery needs a retry
    registry = CollectorRegistry()

    async def scenario() -> None:
        dispatcher = NotificationDispatcher(
            [webhook(receiver.url, registry)], max_queue=100, workers=2, registry=registry
        )
        async with dispatcher:
            for number in range(10):
                assert dispatcher.submit(notice(f"C{number}"))
        assert dispatcher.submit(notice("late")) is False  # stopped: dropped, counted

    asyncio.run(asyncio.wait_for(scenario(), 30))
    delivered = {json.loads(r.body)["case_id"] for r in receiver.requests}
    assert delivered == {f"C{number}" for number in range(10)}
    assert count(registry, "webhook", "delivered") == 10
    assert count(registry, "webhook", "dropped") == 1
    assert attempts(registry, "webhook") == 11


def test_stop_timeout_cancels_and_counts_what_was_left() -> None:
    registry = CollectorRegistry()

    async def scenario() -> NotificationDispatcher:
        channel = GatedNotifier()  # never opened
        dispatcher = NotificationDispatcher([channel], max_queue=10, workers=1, registry=registry)
        await dispatcher.start()
        for number in range(4):
            dispatcher.submit(notice(f"C{number}"))
        await asyncio.wait_for(channel.started.wait(), 5)
        await dispatcher.stop(timeout=0.1)
        return dispatcher

    dispatcher = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert count(registry, "gated", "dropped") == 3  # the one in flight was cancelled
    assert registry.get_sample_value("amlwatch_notification_queue_depth") == 0
    with pytest.raises(Conflict):
        asyncio.run(dispatcher.start())


def test_stop_timeout_counts_a_webhook_delivery_in_flight_as_failed() -> None:
    registry = CollectorRegistry()
    with socket.socket() as silent:  # the delivery hangs until its socket timeout
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"

        async def scenario() -> None:
            notifier = webhook(url, registry, timeout=1.0)  # the thread outlives stop()
            dispatcher = NotificationDispatcher([notifier], registry=registry)
            await dispatcher.start()
            dispatcher.submit(notice())
            while attempts(registry, "webhook") == 0:
                await asyncio.sleep(0.01)
            await dispatcher.stop(timeout=0.1)

        asyncio.run(asyncio.wait_for(scenario(), 10))
    assert count(registry, "webhook", "failed") == 1
    assert count(registry, "webhook", "delivered") == 0


def test_a_broken_notifier_does_not_stop_the_others(receiver: Receiver) -> None:
    registry = CollectorRegistry()

    class Broken:
        channel = "broken"

        async def deliver(self, notice: CaseNotice) -> bool:
            raise RuntimeError("bug")

    async def scenario() -> None:
        notifiers: list[Notifier] = [Broken(), webhook(receiver.url, registry)]
        async with NotificationDispatcher(notifiers, registry=registry) as dispatcher:
            dispatcher.submit(notice("C1"))
            dispatcher.submit(notice("C2"))

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert count(registry, "broken", "failed") == 2
    assert count(registry, "webhook", "delivered") == 2


# --- e-mail through a minimal real SMTP server ------------------------------------------------


@dataclass
class Mailbox:
    port: int
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    rcpt_reply: str | None = None  # e.g. "550 no such user"; None accepts
    rcpt_commands: int = 0


class SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""

    server: SMTPServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        mailbox = self.server.mailbox
        sender, recipients = "", list[str]()
        self.reply("220 test.local ESMTP")
        while line := self.rfile.readline():
            command = line.decode("ascii", "replace").strip()
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 test.local")
            elif verb == "MAIL":
                sender, recipients = command.partition(":")[2].strip(" <>"), []
                self.reply("250 OK")
            elif verb == "RCPT":
                mailbox.rcpt_commands += 1
                if mailbox.rcpt_reply is not None:
                    self.reply(mailbox.rcpt_reply)
                else:
                    recipients.append(command.partition(":")[2].strip(" <>"))
                    self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                data = bytearray()
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                mailbox.messages.append((sender, recipients, bytes(data)))
                self.reply("250 OK queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class SMTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    mailbox: Mailbox


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    server = SMTPServer(("127.0.0.1", 0), SMTPHandler)
    server.mailbox = Mailbox(port=server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.mailbox
    finally:
        server.shutdown()
        server.server_close()


MANAGERS = {"M07": "m07@bank.example"}


def mailer(port: int, registry: CollectorRegistry, **options: object) -> EmailNotifier:
    settings: dict[str, object] = {
        "recipient_for": MANAGERS.get,
        "base_delay": TINY,
        "max_delay": 0.05,
        "registry": registry,
    }
    settings.update(options)
    return EmailNotifier("127.0.0.1", port, "amlwatch@bank.example", **settings)  # type: ignore[arg-type]


def test_email_reaches_the_manager_with_bilingual_subject(mailbox: Mailbox) -> None:
    registry = CollectorRegistry()
    sent = notice()
    assert asyncio.run(mailer(mailbox.port, registry).deliver(sent)) is True

    ((sender, recipients, raw),) = mailbox.messages
    assert sender == "amlwatch@bank.example"
    assert recipients == ["m07@bank.example"]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "[amlwatch] 新案件 / New case C12 (high)"
    assert message["To"] == "m07@bank.example"
    assert message[DELIVERY_HEADER] == sent.delivery_id
    content = message.get_body(preferencelist=("plain",))
    assert content is not None
    text = content.get_content()
    assert "案件 / Case: C12" in text and "CUST0001" in text and "大额现金" in text
    assert count(registry, "email", "delivered") == 1


def test_escalation_subject_names_the_level() -> None:
    subject_notifier = EmailNotifier("127.0.0.1", 25, "a@b.example")
    escalated = notice(event=CaseEvent.ESCALATED, escalation_level=2, severity=Severity.CRITICAL)
    message = subject_notifier.message(escalated, ["x@b.example"])
    assert message["Subject"] == "[amlwatch] 案件升级 / Case escalated C12 (level 2, critical)"


def test_email_without_manager_goes_to_fallback(mailbox: Mailbox) -> None:
    registry = CollectorRegistry()
    notifier = mailer(mailbox.port, registry, fallback_recipients=["aml-team@bank.example"])
    assert asyncio.run(notifier.deliver(notice(manager_id=None))) is True
    assert mailbox.messages[0][1] == ["aml-team@bank.example"]


def test_email_with_no_recipient_fails_without_connecting(mailbox: Mailbox) -> None:
    registry = CollectorRegistry()
    notifier = mailer(mailbox.port, registry)
    assert asyncio.run(notifier.deliver(notice(manager_id="M99"))) is False
    assert mailbox.messages == [] and mailbox.rcpt_commands == 0
    assert count(registry, "email", "failed") == 1


def test_email_550_is_permanent(mailbox: Mailbox) -> None:
    mailbox.rcpt_reply = "550 no such user"
    registry = CollectorRegistry()
    assert asyncio.run(mailer(mailbox.port, registry).deliver(notice())) is False
    assert mailbox.rcpt_commands == 1
    assert attempts(registry, "email") == 1
    assert count(registry, "email", "failed") == 1


def test_email_451_is_retried_until_max_attempts(mailbox: Mailbox) -> None:
    mailbox.rcpt_reply = "451 try later"
    registry = CollectorRegistry()
    assert asyncio.run(mailer(mailbox.port, registry, max_attempts=3).deliver(notice())) is False
    assert mailbox.rcpt_commands == 3
    assert count(registry, "email", "failed") == 1


def test_email_to_a_dead_relay_fails_after_retries() -> None:
    registry = CollectorRegistry()
    assert asyncio.run(mailer(closed_port(), registry, max_attempts=2).deliver(notice())) is False
    assert attempts(registry, "email") == 2
    assert count(registry, "email", "failed") == 1


def test_email_credentials_require_starttls() -> None:
    with pytest.raises(InvalidInput, match="starttls"):
        EmailNotifier("relay", 25, "a@b.example", username="u", password="p")
    with pytest.raises(InvalidInput, match="together"):
        EmailNotifier("relay", 587, "a@b.example", starttls=True, username="u")
