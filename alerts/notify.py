"""Notifications for new, escalated or joined cases: a signed webhook and an optional e-mail.

Delivery never blocks the stream: the worker calls :meth:`NotificationDispatcher.submit`,
which only enqueues (or drops and counts when the bounded queue is full); a background task
delivers, retrying transient failures with capped exponential backoff and jitter. Every
outcome is counted in Prometheus with low-cardinality labels (``channel``, ``outcome``).

Confidentiality: a :class:`CaseNotice` carries case and customer *identifiers* only, never a
customer's name or identity-document number, so a notice can leave the bank's systems (to a
webhook receiver or a mailbox) without disclosing who the customer is. Whoever builds
``reasons`` must keep names and ID numbers out of them as well.

Webhook receivers check a delivery with :func:`verify_signature`. The signature is an
HMAC-SHA256 over ``timestamp + "." + body`` (see :func:`sign`), so a captured request replayed
with a fresh ``X-Amlwatch-Timestamp`` does not verify, and a stale one is refused by the
receiver's tolerance window. ``X-Amlwatch-Delivery`` is derived from the notice's content, so
it is the same on every retry and on a replay of the same case event after a restart:
receivers de-duplicate on it. ``X-Amlwatch-Timestamp`` is Unix seconds, set afresh on each
attempt (and signed with it), so a retry after a long backoff is still fresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import smtplib
import ssl
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from enum import StrEnum
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge

from core.detection import Severity
from core.errors import Conflict, InvalidInput

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Amlwatch-Signature"
TIMESTAMP_HEADER = "X-Amlwatch-Timestamp"
EVENT_HEADER = "X-Amlwatch-Event"
DELIVERY_HEADER = "X-Amlwatch-Delivery"

# A receiver that answers with a large body gets no more of our attention than this.
_MAX_RESPONSE_BYTES = 64 * 1024


class CaseEvent(StrEnum):
    OPENED = "case_opened"
    ESCALATED = "case_escalated"
    JOINED = "case_joined"  # a further detection joined an open case


class NotificationOutcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"  # permanent error, or retries exhausted
    DROPPED = "dropped"  # never attempted: queue full, or dispatcher stopped


@dataclass(frozen=True, slots=True)
class CaseNotice:
    """What a receiver learns about one case event: identifiers and facts, no customer PII.

    Deliberately has no customer name and no identity-document number (see module docstring).
    """

    event: CaseEvent
    case_id: str
    customer_id: str
    manager_id: str | None
    queue: str
    severity: Severity
    escalation_level: int
    reasons: tuple[str, ...]
    occurred_at: datetime  # timezone-aware

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None or self.occurred_at.utcoffset() is None:
            raise InvalidInput(f"case notice {self.case_id!r}: occurred_at must be timezone-aware")
        if not isinstance(self.reasons, tuple):
            raise InvalidInput(f"case notice {self.case_id!r}: reasons must be a tuple")
        if self.escalation_level < 0:
            raise InvalidInput(f"case notice {self.case_id!r}: escalation_level must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, without the delivery id."""
        return {
            "event": self.event.value,
            "case_id": self.case_id,
            "customer_id": self.customer_id,
            "manager_id": self.manager_id,
            "queue": self.queue,
            "severity": self.severity.value,
            "escalation_level": self.escalation_level,
            "reasons": list(self.reasons),
            "occurred_at": self.occurred_at.isoformat(),
        }

    @property
    def delivery_id(self) -> str:
        """Stable id of this notice: equal notices (retries, replays) share it."""
        digest = hashlib.sha256(_canonical_json(self.to_dict())).hexdigest()
        return f"ntc-{digest[:32]}"

    def to_json(self) -> bytes:
        """Canonical JSON body of the webhook: sorted keys, no spaces, UTF-8."""
        return _canonical_json({**self.to_dict(), "delivery_id": self.delivery_id})


def _canonical_json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- signatures -----------------------------------------------------------------------------


def _secret_bytes(secret: bytes | str) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not raw:
        raise InvalidInput("webhook secret must not be empty")
    return raw


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``X-Amlwatch-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``timestamp.body``."""
    mac = hmac.new(_secret_bytes(secret), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance: float | None = 300.0,
    now: float | None = None,
) -> bool:
    """True if ``signature`` is ours for this timestamp and body, and the timestamp is fresh.

    ``tolerance`` is in seconds either side of ``now`` (default: the current time); ``None``
    skips the freshness check. The comparison is constant-time.
    """
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if tolerance is not None:
        current = time.time() if now is None else now
        if abs(current - sent_at) > tolerance:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


# --- metrics --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotificationMetrics:
    """The notification metrics of one registry; labels are only channel and outcome."""

    registry: CollectorRegistry
    notifications: Counter
    attempts: Counter
    queue_depth: Gauge

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> NotificationMetrics:
        """The metrics registered in ``registry``, created once (a fresh registry if None)."""
        if registry is None:
            registry = CollectorRegistry()
        # Notifiers and the dispatcher share one registry; registering twice would raise.
        with _METRICS_LOCK:
            existing = _METRICS.get(registry)
            if existing is None:
                existing = cls(
                    registry=registry,
                    notifications=Counter(
                        "amlwatch_notifications",
                        "Case notifications by channel and outcome (delivered/failed/dropped).",
                        ["channel", "outcome"],
                        registry=registry,
                    ),
                    attempts=Counter(
                        "amlwatch_notification_attempts",
                        "Delivery attempts (first tries and retries), by channel.",
                        ["channel"],
                        registry=registry,
                    ),
                    queue_depth=Gauge(
                        "amlwatch_notification_queue_depth",
                        "Case notices waiting in the dispatcher's queue.",
                        registry=registry,
                    ),
                )
                _METRICS[registry] = existing
            return existing

    def count(self, channel: str, outcome: NotificationOutcome, amount: int = 1) -> None:
        """Count ``amount`` notices of ``channel`` with ``outcome``."""
        self.notifications.labels(channel=channel, outcome=outcome.value).inc(amount)

    def declare(self, channel: str) -> None:
        """Export zeros for every outcome of ``channel``, so dashboards see the series."""
        for outcome in NotificationOutcome:
            self.notifications.labels(channel=channel, outcome=outcome.value)
        self.attempts.labels(channel=channel)


_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, NotificationMetrics] = (
    weakref.WeakKeyDictionary()
)
_METRICS_LOCK = threading.Lock()


# --- retries --------------------------------------------------------------------------------


def backoff_delay(
    retry: int,
    *,
    base_delay: float,
    max_delay: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``retry`` (1-based), in ``[cap / 2, cap]``.

    ``cap = min(max_delay, base_delay * 2 ** (retry - 1))``; the random half spreads the
    retries of many notices so a recovering receiver is not hit by all of them at once.
    """
    cap = min(max_delay, base_delay * 2 ** (retry - 1))
    return cap / 2 + rand() * cap / 2


@dataclass(frozen=True, slots=True)
class _Attempt:
    delivered: bool
    retryable: bool
    detail: str
    retry_after: float | None = None


_DELIVERED = _Attempt(delivered=True, retryable=False, detail="ok")

Sleep = Callable[[float], Awaitable[Any]]


class Notifier(Protocol):
    """One channel: delivers a notice (retrying as it sees fit) and counts the outcome."""

    channel: str

    async def deliver(self, notice: CaseNotice) -> bool:
        """Deliver ``notice``; True if delivered. Never raises for delivery failures."""
        ...


class _RetryingNotifier:
    """Retry loop, metrics and logging shared by the channels; subclasses make one attempt."""

    channel: str

    def __init__(
        self,
        *,
        max_attempts: int,
        base_delay: float,
        max_delay: float,
        timeout: float,
        registry: CollectorRegistry | None,
        sleep: Sleep | None,
    ) -> None:
        if max_attempts < 1:
            raise InvalidInput("max_attempts must be at least 1")
        if base_delay < 0 or max_delay < 0:
            raise InvalidInput("base_delay and max_delay must not be negative")
        if timeout <= 0:
            raise InvalidInput("timeout must be positive")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self.metrics = NotificationMetrics.for_registry(registry)
        self.metrics.declare(self.channel)
        self._sleep: Sleep = sleep if sleep is not None else asyncio.sleep

    def _attempt(self, notice: CaseNotice) -> _Attempt:
        """One blocking delivery attempt (runs in a worker thread)."""
        raise NotImplementedError

    async def deliver(self, notice: CaseNotice) -> bool:
        """Deliver ``notice`` with retries; count and log the outcome. Never raises on failure."""
        try:
            delivered = await self._deliver_with_retries(notice)
        except asyncio.CancelledError:
            # Cancelled by a dispatcher that stopped before this notice got through.
            self.metrics.count(self.channel, NotificationOutcome.FAILED)
            log.warning("%s notice for case %s cancelled", self.channel, notice.case_id)
            raise
        self.metrics.count(
            self.channel, NotificationOutcome.DELIVERED if delivered else NotificationOutcome.FAILED
        )
        return delivered

    async def _deliver_with_retries(self, notice: CaseNotice) -> bool:
        for attempt_number in range(1, self.max_attempts + 1):
            self.metrics.attempts.labels(channel=self.channel).inc()
            try:
                attempt = await asyncio.to_thread(self._attempt, notice)
            except Exception as error:  # a bug in an attempt must not kill the dispatcher
                log.exception(
                    "%s notice for case %s: unexpected error", self.channel, notice.case_id
                )
                attempt = _Attempt(delivered=False, retryable=False, detail=repr(error))
            if attempt.delivered:
                return True
            if not attempt.retryable:
                log.error(
                    "%s notice for case %s failed permanently: %s",
                    self.channel,
                    notice.case_id,
                    attempt.detail,
                )
                return False
            if attempt_number == self.max_attempts:
                break
            delay = backoff_delay(
                attempt_number, base_delay=self.base_delay, max_delay=self.max_delay
            )
            if attempt.retry_after is not None:
                delay = min(self.max_delay, max(delay, attempt.retry_after))
            log.info(
                "%s notice for case %s: attempt %d/%d failed (%s), retrying in %.2fs",
                self.channel,
                notice.case_id,
                attempt_number,
                self.max_attempts,
                attempt.detail,
                delay,
            )
            await self._sleep(delay)
        log.error(
            "%s notice for case %s failed after %d attempts: %s",
            self.channel,
            notice.case_id,
            self.max_attempts,
            attempt.detail,
        )
        return False


# --- webhook --------------------------------------------------------------------------------


class WebhookNotifier(_RetryingNotifier):
    """POSTs each notice as canonical JSON, HMAC-signed, to one configured URL.

    Retries connection errors, timeouts, 429 and 5xx; any other non-2xx answer (4xx, and 3xx:
    redirects are not followed, a signed POST must not silently turn into something else) is
    a permanent failure. Connects directly, without a proxy. ``secret`` is bytes, or a str
    that is UTF-8 encoded; an empty one is refused.
    """

    channel = "webhook"

    def __init__(
        self,
        url: str,
        secret: bytes | str,
        *,
        max_attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        timeout: float = 5.0,
        registry: CollectorRegistry | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"webhook URL must be http(s)://host/...: {_safe_url(url)!r}")
        if parts.username or parts.password:
            raise InvalidInput("webhook URL must not carry credentials; the secret signs it")
        self._secret = _secret_bytes(secret)
        self._url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        super().__init__(
            max_attempts=max_attempts,
            base_delay=base_delay,
            max_delay=max_delay,
            timeout=timeout,
            registry=registry,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        # Never the secret, nor a query string that may hold a token.
        return f"WebhookNotifier({_safe_url(self._url)!r})"

    def _attempt(self, notice: CaseNotice) -> _Attempt:
        body = notice.to_json()
        # A fresh timestamp per attempt: a retry after a long backoff stays inside the
        # receiver's freshness window.
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "amlwatch-notify/1",
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
            EVENT_HEADER: notice.event.value,
            DELIVERY_HEADER: notice.delivery_id,
        }
        connection: HTTPConnection
        if self._https:
            connection = HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            connection.request("POST", self._target, body=body, headers=headers)
            response = connection.getresponse()
            response.read(_MAX_RESPONSE_BYTES)
            status = response.status
            retry_after = _retry_after_seconds(response.getheader("Retry-After"))
        except (OSError, HTTPException) as error:  # refused, reset, timeout, TLS, bad reply
            return _Attempt(delivered=False, retryable=True, detail=repr(error))
        finally:
            connection.close()
        if 200 <= status < 300:
            return _DELIVERED
        retryable = status == 429 or 500 <= status < 600
        return _Attempt(
            delivered=False, retryable=retryable, detail=f"HTTP {status}", retry_after=retry_after
        )


def _safe_url(url: str) -> str:
    """Scheme, host and port only: paths and query strings may hold tokens."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}/..."


def _retry_after_seconds(value: str | None) -> float | None:
    # Only the delta-seconds form; an HTTP date is rare for webhooks and backoff covers it.
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


# --- e-mail ---------------------------------------------------------------------------------

_SUBJECT_BY_EVENT = {
    CaseEvent.OPENED: "新案件 / New case",
    CaseEvent.ESCALATED: "案件升级 / Case escalated",
    CaseEvent.JOINED: "案件新增预警 / New alert on case",
}


def email_subject(notice: CaseNotice) -> str:
    """Bilingual subject, e.g. ``[amlwatch] 新案件 / New case C12 (high)``."""
    detail = notice.severity.value
    if notice.event is CaseEvent.ESCALATED:
        detail = f"level {notice.escalation_level}, {detail}"
    return f"[amlwatch] {_SUBJECT_BY_EVENT[notice.event]} {notice.case_id} ({detail})"


def email_body(notice: CaseNotice) -> str:
    """Bilingual plain-text body: identifiers and facts of the notice, nothing more."""
    lines = [
        f"案件 / Case: {notice.case_id}",
        f"事件 / Event: {notice.event.value}",
        f"客户编号 / Customer ID: {notice.customer_id}",
        f"客户经理 / Manager: {notice.manager_id or '-'}",
        f"队列 / Queue: {notice.queue}",
        f"严重程度 / Severity: {notice.severity.value}",
        f"升级级别 / Escalation level: {notice.escalation_level}",
        f"发生时间 / Occurred at: {notice.occurred_at.isoformat()}",
        "原因 / Reasons:",
        *(f"  - {reason}" for reason in notice.reasons),
        "",
        "请在 amlwatch 中处理此案件。/ Please handle this case in amlwatch.",
    ]
    return "\n".join(lines) + "\n"


class EmailNotifier(_RetryingNotifier):
    """Sends each notice as a bilingual plain-text e-mail through one SMTP relay.

    Recipients come from ``recipient_for(manager_id)`` (so this module needs no database),
    else ``fallback_recipients``; a notice with neither fails. SMTP 4xx replies, dropped
    connections and timeouts are retried; 5xx replies are permanent.
    """

    channel = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        recipient_for: Callable[[str], str | None] | None = None,
        fallback_recipients: Iterable[str] = (),
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        max_attempts: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        timeout: float = 10.0,
        registry: CollectorRegistry | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise InvalidInput("SMTP username and password go together")
        if username is not None and not starttls:
            raise InvalidInput("SMTP credentials need starttls=True; never send them in clear")
        self.host = host
        self.port = port
        self.sender = sender
        self.starttls = starttls
        self._username = username
        self._password = password
        self._recipient_for = recipient_for
        self._fallback = tuple(fallback_recipients)
        super().__init__(
            max_attempts=max_attempts,
            base_delay=base_delay,
            max_delay=max_delay,
            timeout=timeout,
            registry=registry,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"EmailNotifier({self.host!r}, {self.port})"

    def recipients(self, notice: CaseNotice) -> tuple[str, ...]:
        """The manager's address if known, else the fallback recipients."""
        if notice.manager_id is not None and self._recipient_for is not None:
            address = self._recipient_for(notice.manager_id)
            if address:
                return (address,)
        return self._fallback

    def message(self, notice: CaseNotice, recipients: Sequence[str]) -> EmailMessage:
        """The e-mail for ``notice``."""
        message = EmailMessage()
        message["Subject"] = email_subject(notice)
        message["From"] = self.sender
        message["To"] = ", ".join(recipients)
        message["Date"] = format_datetime(datetime.now().astimezone())
        message["Message-ID"] = make_msgid(domain="amlwatch")
        message[DELIVERY_HEADER] = notice.delivery_id
        # base64 keeps the Chinese text intact through relays without 8BITMIME.
        message.set_content(email_body(notice), charset="utf-8", cte="base64")
        return message

    def _attempt(self, notice: CaseNotice) -> _Attempt:
        recipients = self.recipients(notice)
        if not recipients:
            return _Attempt(
                delivered=False,
                retryable=False,
                detail=f"no recipient for manager {notice.manager_id!r}",
            )
        message = self.message(notice, recipients)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self._username is not None and self._password is not None:
                    smtp.login(self._username, self._password)
                refused = smtp.send_message(message, self.sender, list(recipients))
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            transient = all(400 <= code < 500 for code in codes)
            return _Attempt(delivered=False, retryable=transient, detail=f"recipients {codes}")
        except smtplib.SMTPResponseException as error:
            transient = 400 <= error.smtp_code < 500
            return _Attempt(delivered=False, retryable=transient, detail=f"SMTP {error.smtp_code}")
        except smtplib.SMTPNotSupportedError as error:  # e.g. no STARTTLS on the relay
            return _Attempt(delivered=False, retryable=False, detail=repr(error))
        except OSError as error:  # refused, disconnected, timeout, TLS (SMTPException too)
            return _Attempt(delivered=False, retryable=True, detail=repr(error))
        if refused:
            log.warning("email for case %s: some recipients refused: %s", notice.case_id, refused)
        return _DELIVERED


# --- dispatcher -----------------------------------------------------------------------------


class NotificationDispatcher:
    """Bounded queue plus background tasks that hand each notice to every notifier.

    :meth:`submit` never waits: it enqueues, or drops and counts when the queue is full. It
    must be called on the event loop's thread (the Faust worker's loop). With more than one
    worker task, notices may be delivered out of order; receivers order by ``occurred_at``.
    """

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        *,
        max_queue: int = 1000,
        workers: int = 4,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if max_queue < 1 or workers < 1:
            raise InvalidInput("max_queue and workers must be at least 1")
        self.notifiers = tuple(notifiers)
        self.metrics = NotificationMetrics.for_registry(registry)
        for notifier in self.notifiers:
            self.metrics.declare(notifier.channel)
        self.metrics.queue_depth.set(0)
        self._queue: asyncio.Queue[CaseNotice] = asyncio.Queue(maxsize=max_queue)
        self._worker_count = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._dropping = False

    async def start(self) -> NotificationDispatcher:
        """Start the background delivery tasks on the running loop."""
        if self._stopped:
            raise Conflict("a stopped notification dispatcher cannot be restarted")
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"amlwatch-notify-{index}")
                for index in range(self._worker_count)
            ]
        return self

    def submit(self, notice: CaseNotice) -> bool:
        """Queue ``notice`` for delivery; False (and counted as dropped) if it cannot be."""
        if self._stopped:
            self._drop(notice, "dispatcher stopped")
            return False
        try:
            self._queue.put_nowait(notice)
        except asyncio.QueueFull:
            self._drop(notice, "queue full")
            return False
        self._dropping = False
        self.metrics.queue_depth.set(self._queue.qsize())
        return True

    async def stop(self, timeout: float = 10.0) -> None:
        """Refuse new notices, deliver the queued ones for up to ``timeout`` s, then cancel."""
        self._stopped = True
        if self._tasks:
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except TimeoutError:
                log.warning(
                    "notification dispatcher stopped with %d notices undelivered",
                    self._queue.qsize(),
                )
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        left = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            left += 1
        for notifier in self.notifiers:
            if left:
                self.metrics.count(notifier.channel, NotificationOutcome.DROPPED, left)
        self.metrics.queue_depth.set(0)

    async def __aenter__(self) -> NotificationDispatcher:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _drop(self, notice: CaseNotice, why: str) -> None:
        for notifier in self.notifiers:
            self.metrics.count(notifier.channel, NotificationOutcome.DROPPED)
        # One log line per run of drops; the counter has the full number.
        if not self._dropping:
            log.warning("case notices are being dropped (%s), first: case %s", why, notice.case_id)
            self._dropping = True

    async def _work(self) -> None:
        while True:
            notice = await self._queue.get()
            self.metrics.queue_depth.set(self._queue.qsize())
            try:
                await asyncio.gather(
                    *(self._deliver(notifier, notice) for notifier in self.notifiers)
                )
            finally:
                self._queue.task_done()

    async def _deliver(self, notifier: Notifier, notice: CaseNotice) -> None:
        try:
            await notifier.deliver(notice)
        except Exception:  # a broken notifier must not stop the others or the dispatcher
            self.metrics.count(notifier.channel, NotificationOutcome.FAILED)
            log.exception("%s notifier raised for case %s", notifier.channel, notice.case_id)
