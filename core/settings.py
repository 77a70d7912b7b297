"""Typed settings read from the environment (prefix ``AMLWATCH_``) by the entry points only."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.transaction import DEFAULT_MAX_MESSAGE_BYTES


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

    def kafka_url(self, embedded_port: int | None = None) -> str:
        """The broker URL Faust should use, given the embedded broker's port if running."""
        if self.broker_url is not None:
            return self.broker_url
        port = embedded_port if embedded_port is not None else self.embedded_broker_port
        return f"kafka://127.0.0.1:{port}"
