from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings


def test_defaults_use_the_embedded_broker_with_its_dev_profile() -> None:
    settings = Settings(_env_file=None)
    assert settings.uses_embedded_broker
    assert settings.use_dev_broker_profile
    assert settings.kafka_url(embedded_port=19092) == "kafka://127.0.0.1:19092"


def test_a_real_broker_turns_the_dev_profile_off_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AMLWATCH_BROKER_URL", "kafka://kafka-1:9092")
    settings = Settings()
    assert settings.kafka_url() == "kafka://kafka-1:9092"
    assert not settings.use_dev_broker_profile
    monkeypatch.setenv("AMLWATCH_DEV_BROKER_PROFILE", "true")
    assert Settings().use_dev_broker_profile


def test_unknown_timezone_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLWATCH_BANK_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValidationError, match="Mars/Olympus"):
        Settings()


def test_the_decoded_record_cache_is_sized_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(_env_file=None).decoded_records_kept == 10_000
    monkeypatch.setenv("AMLWATCH_DECODED_RECORDS_KEPT", "250000")
    assert Settings().decoded_records_kept == 250_000
    monkeypatch.setenv("AMLWATCH_DECODED_RECORDS_KEPT", "-1")
    with pytest.raises(ValidationError, match="decoded_records_kept"):
        Settings()
