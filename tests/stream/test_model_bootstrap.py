"""``amlwatch up --simulate`` trains a first model when the registry has none."""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from models.features import FEATURE_NAMES
from models.registry import active_version, list_versions, load
from stream.cli import bootstrap_model


def test_an_empty_registry_gets_a_trained_and_activated_model(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)

    version = bootstrap_model(settings, customers=20, days=12)

    assert version is not None
    assert active_version(settings.model_registry) == version
    detector, metadata = load(settings.model_registry, version, expected_features=FEATURE_NAMES)
    assert metadata.training_period[0] < metadata.training_period[1]
    assert detector.threshold_ > 0


def test_a_registry_with_a_model_is_left_alone(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path / "registry")
    first = bootstrap_model(settings, customers=20, days=12)

    assert bootstrap_model(settings, customers=20, days=12) is None
    assert [info.version for info in list_versions(settings.model_registry)] == [first]
