"""Typed settings read from the environment (prefix ``AMLWATCH_``) by the entry points only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.detection import Severity
from core.transaction import DEFAULT_MAX_MESSAGE_BYTES

# Secrets that are clearly still the example value (compared lower-case, letters and digits).
PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "changeit", "secret", "password", "placeholder", "example", "todo", "test", "xxx"}
)
MIN_SECRET_LENGTH = 16
# Enough for the customers active within minutes on a busy worker; any other customer's
# record is decoded again on their next transaction (about 0.2 ms with months of
# history: the rules bench's record_json). Why not every customer: the memory
# (stream.customer_table.CustomerTable).
DEFAULT_DECODED_RECORDS_KEPT = 10_000


class Settings(BaseSettings):
    """Everything an operator can set. Library code receives values, never reads env."""

    model_config = SettingsConfigDict(env_prefix="AMLWATCH_", extra="ignore")

    app_id: str = Field(
        "amlwatch",
        description="Faust app id: consumer group, and prefix of every internal topic.",
    )
    broker_url: str | None = Field(
        None,
        description="Kafka bootstrap, e.g. kafka://host:9092. Unset: the embedded broker.",
    )
    embedded_broker_port: int = Field(
        9092, ge=0, le=65535, description="Port of the embedded broker; 0 picks a free one."
    )
    dev_broker_profile: bool | None = Field(
        None,
        description=(
            "Short session timeouts and one-record producer batches for the embedded broker. "
            "Unset: on exactly when broker_url is unset."
        ),
    )
    transactions_topic: str = "transactions"
    dead_letter_topic: str = "transactions-dlq"
    alerts_topic: str = Field("alerts", description="Suspicious-transaction detections.")
    reports_topic: str = Field(
        "large-value-reports", description="Large-value report records (not alerts)."
    )
    topic_partitions: int = Field(4, ge=1, le=1024)
    topic_replication: int = Field(1, ge=1)
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=1024)
    decoded_records_kept: int = Field(
        DEFAULT_DECODED_RECORDS_KEPT,
        ge=0,
        description=(
            "Customers whose table records a worker keeps decoded, the most recently used: "
            "any other customer's record is decoded from its bytes on their next transaction."
        ),
    )
    eager_delivery: bool = Field(
        True,
        description=(
            "Faust's consumer starts each record's delivery before racing it, a full stream "
            "buffer is refilled in bulk, and a raw record's event is made without Faust's "
            "codecs (stream.delivery). False: Faust's own path."
        ),
    )
    rule_pack: Path | None = Field(
        None, description="Rule pack TOML file. Unset: the packaged 'pboc' pack."
    )
    customers_file: Path | None = Field(
        None,
        description=(
            "Customers CSV (DESIGN.md columns) the rules read customer type from; re-read "
            "when it changes. Unknown customers are treated as natural persons."
        ),
    )
    watch_list_file: Path | None = Field(
        None, description="Watch-list CSV. Unset: the packaged sample list."
    )
    rates_file: Path | None = Field(None, description="Currency rates CSV. Unset: packaged.")
    country_lists_file: Path | None = Field(
        None, description="FATF country lists TOML. Unset: packaged."
    )
    allowed_lateness_hours: int = Field(
        48, ge=0, description="How late (event time) a transaction may arrive and still count."
    )
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    data_dir: Path = Path(".amlwatch")
    models_dir: Path | None = Field(
        None,
        description="Anomaly model registry the worker scores with. Unset: <data_dir>/models.",
    )
    model_poll_seconds: float = Field(
        5.0, gt=0, description="How often the worker checks the registry's active version."
    )
    bank_timezone: str = "Asia/Shanghai"
    bank_country: str = Field("CN", min_length=2, max_length=2)
    log_level: str = "info"

    @field_validator("bank_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker_url is None

    @property
    def use_dev_broker_profile(self) -> bool:
        if self.dev_broker_profile is None:
            return self.uses_embedded_broker
        return self.dev_broker_profile

    @property
    def model_registry(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    def kafka_url(self, embedded_port: int | None = None) -> str:
        """The broker URL Faust should use, given the embedded broker's port if running."""
        if self.broker_url is not None:
            return self.broker_url
        port = embedded_port if embedded_port is not None else self.embedded_broker_port
        return f"kafka://127.0.0.1:{port}"

    # Case store, deadlines, notifications (amlwatch import/managers/audit/db, the worker).
    database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the case store, e.g. postgresql+psycopg://user@host/db. "
            "Unset: the SQLite file <data_dir>/cases.sqlite3. Migrated on open."
        ),
    )
    holidays_file: Path | None = Field(
        None,
        description=(
            "Holiday calendar CSV for working-day deadlines (the format of "
            "rules/reference/holidays-cn.csv). Unset: the packaged calendar (2024-2026)."
        ),
    )
    ack_business_hours: dict[Severity, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict,
        description=(
            "Acknowledgement deadline overrides in business hours, per severity, as JSON, "
            'e.g. {"critical": 1}. Severities left out keep the defaults of '
            "alerts.deadlines (critical 2, high 4, medium 8, low 16)."
        ),
    )
    disposition_working_days: dict[Severity, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict,
        description=(
            "Disposition deadline overrides in working days, per severity, as JSON, "
            'e.g. {"low": 7}. Severities left out keep the defaults of alerts.deadlines '
            "(critical 1, high 3, medium 5, low 10)."
        ),
    )
    str_working_days: int = Field(
        5, gt=0, description="Working days to file an STR once a case is judged suspicious."
    )
    escalation_check_seconds: float = Field(
        60.0, gt=0, description="How often the worker looks for overdue cases to escalate."
    )
    dev_mode: bool = Field(
        False,
        description=(
            "A development or demo installation: placeholder and short secrets are "
            "accepted. Never set in production."
        ),
    )
    webhook_url: str | None = Field(
        None,
        description=(
            "http(s) URL that receives HMAC-signed case notices. Unset: no webhook. "
            "Needs AMLWATCH_WEBHOOK_SECRET."
        ),
    )
    webhook_secret: SecretStr | None = Field(
        None,
        validate_default=True,
        description=(
            "HMAC key signing webhook deliveries; required with AMLWATCH_WEBHOOK_URL. "
            f"At least {MIN_SECRET_LENGTH} characters and no placeholder such as "
            "'changeme', unless AMLWATCH_DEV_MODE is on."
        ),
    )
    smtp_host: str | None = Field(
        None, description="SMTP relay for e-mail notices to managers. Unset: no e-mail."
    )
    smtp_port: int = Field(587, ge=1, le=65535, description="Port of the SMTP relay.")
    smtp_sender: str | None = Field(
        None,
        validate_default=True,
        description="From address of e-mail notices; required with AMLWATCH_SMTP_HOST.",
    )
    smtp_starttls: bool = Field(
        True, description="Upgrade the SMTP connection with STARTTLS before sending."
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_webhook(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _usable_webhook_secret(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        secret = value.get_secret_value().strip() if value is not None else ""
        if not secret:
            if info.data.get("webhook_url") is not None:
                raise ValueError("is required when AMLWATCH_WEBHOOK_URL is set")
            return None
        if info.data.get("dev_mode"):
            return value
        if re.sub(r"[^a-z0-9]", "", secret.lower()) in PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder; set a real secret (or AMLWATCH_DEV_MODE=true)")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters long")
        return value

    @field_validator("smtp_sender")
    @classmethod
    def _sender_with_host(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("smtp_host") is not None and not value:
            raise ValueError("is required when AMLWATCH_SMTP_HOST is set")
        return value
