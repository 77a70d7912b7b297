"""Model registry: versions on disk, refusal of incompatible models, the ACTIVE pointer."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn

from core.errors import Conflict, InvalidInput, NotFound
from models.detector import AnomalyDetector
from models.registry import (
    ACTIVE_FILE,
    METADATA_FILE,
    MODEL_FILE,
    IncompatibleModel,
    ModelArtefact,
    UnreadableModel,
    activate,
    active_version,
    list_versions,
    load,
    save,
)

FEATURES = ["amount_z", "daily_count", "night_share"]
PERIOD = (date(2025, 1, 1), date(2025, 3, 31))
METRICS = {"structuring": {"precision": 0.4, "recall": 0.7}}


def rows(count: int, seed: int) -> pd.DataFrame:
    values = np.random.default_rng(seed).normal(size=(count, len(FEATURES)))
    return pd.DataFrame(values, columns=FEATURES)


@pytest.fixture(scope="module")
def detector() -> AnomalyDetector:
    return AnomalyDetector(n_estimators=30, random_state=0).fit(rows(300, 1))


def save_at(
    detector: AnomalyDetector, directory: Path, created_at: datetime, **changes: object
) -> ModelArtefact:
    arguments: dict[str, object] = {
        "feature_names": FEATURES,
        "training_data_hash": "sha256:" + "ab" * 32,
        "training_period": PERIOD,
        "metrics": METRICS,
        "created_at": created_at,
        **changes,
    }
    return save(detector, directory=directory, **arguments)  # type: ignore[arg-type]


AT = datetime(2025, 4, 1, 9, 30, tzinfo=UTC)


def test_round_trip_gives_identical_risk_scores(detector: AnomalyDetector, tmp_path: Path) -> None:
    artefact = save_at(detector, tmp_path, AT)
    loaded, metadata = load(tmp_path, artefact.version, expected_features=FEATURES)
    probe = rows(500, 2)
    np.testing.assert_array_equal(loaded.risk_score(probe), detector.risk_score(probe))
    assert loaded.threshold_ == detector.threshold_
    assert metadata == artefact.metadata


def test_version_directory_and_metadata_content(detector: AnomalyDetector, tmp_path: Path) -> None:
    shanghai = timezone(timedelta(hours=8))
    artefact = save_at(detector, tmp_path, datetime(2025, 4, 1, 17, 30, 5, tzinfo=shanghai))
    assert artefact.version.startswith("20250401-093005-")
    assert artefact.path == tmp_path / artefact.version
    assert sorted(p.name for p in artefact.path.iterdir()) == [METADATA_FILE, MODEL_FILE]
    written = json.loads((artefact.path / METADATA_FILE).read_text())
    assert written["version"] == artefact.version
    assert written["created_at"] == "2025-04-01T09:30:05+00:00"
    assert written["feature_names"] == FEATURES
    # JSON has no tuples: the one_sided feature names come back as a list.
    assert written["hyperparameters"] == {**detector.get_params(), "one_sided": []}
    assert written["training_data_hash"] == "sha256:" + "ab" * 32
    assert written["training_period"] == {"start": "2025-01-01", "end": "2025-03-31"}
    assert set(written["library_versions"]) == {"python", "scikit-learn", "numpy", "pandas"}
    assert written["library_versions"]["scikit-learn"] == sklearn.__version__
    assert written["threshold"] == detector.threshold_
    assert written["target_alert_rate"] == 0.005
    assert written["metrics"] == METRICS
    assert artefact.version.endswith(written["model_sha256"][:8])


def test_metrics_may_be_absent_and_a_random_state_object_is_recorded_by_repr(
    tmp_path: Path,
) -> None:
    seeded = AnomalyDetector(n_estimators=5, random_state=np.random.RandomState(0))
    artefact = save_at(seeded.fit(rows(50, 3)), tmp_path, AT, metrics=None)
    written = json.loads((artefact.path / METADATA_FILE).read_text())
    assert written["metrics"] is None
    assert written["hyperparameters"]["random_state"].startswith("RandomState")


def test_a_different_scikit_learn_version_is_refused(
    detector: AnomalyDetector, tmp_path: Path
) -> None:
    artefact = save_at(detector, tmp_path, AT)
    path = artefact.path / METADATA_FILE
    written = json.loads(path.read_text())
    written["library_versions"]["scikit-learn"] = "1.4.2"
    path.write_text(json.dumps(written))
    with pytest.raises(IncompatibleModel) as caught:
        load(tmp_path, artefact.version)
    assert isinstance(caught.value, Conflict)
    assert "scikit-learn 1.4.2" in str(caught.value)
    assert f"scikit-learn {sklearn.__version__}" in str(caught.value)


def test_a_different_feature_list_is_refused(detector: AnomalyDetector, tmp_path: Path) -> None:
    artefact = save_at(detector, tmp_path, AT)
    expected = [*FEATURES, "hour_of_day"]
    with pytest.raises(IncompatibleModel) as caught:
        load(tmp_path, artefact.version, expected_features=expected)
    assert str(FEATURES) in str(caught.value)
    assert str(expected) in str(caught.value)
    with pytest.raises(IncompatibleModel, match="trained on features"):
        load(tmp_path, artefact.version, expected_features=list(reversed(FEATURES)))


def test_an_altered_pickle_is_refused_before_unpickling(
    detector: AnomalyDetector, tmp_path: Path
) -> None:
    artefact = save_at(detector, tmp_path, AT)
    (artefact.path / MODEL_FILE).write_bytes(b"not the saved model")
    with pytest.raises(UnreadableModel, match="does not match its recorded hash"):
        load(tmp_path, artefact.version)


def test_save_refuses_what_it_could_not_describe_truthfully(
    detector: AnomalyDetector, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="differ from the names the detector was fitted with"):
        save_at(detector, tmp_path, AT, feature_names=list(reversed(FEATURES)))
    with pytest.raises(ValueError, match="fitted detector"):
        save_at(AnomalyDetector(), tmp_path, AT)
    with pytest.raises(ValueError, match="timezone-aware"):
        save_at(detector, tmp_path, datetime(2025, 4, 1, 9, 30))
    with pytest.raises(ValueError, match="starts 2025-03-31 after it ends 2025-01-01"):
        save_at(detector, tmp_path, AT, training_period=(PERIOD[1], PERIOD[0]))
    with pytest.raises(TypeError):
        save_at(detector, tmp_path, AT, metrics={"when": date(2025, 1, 1)})
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left behind


def test_a_version_is_never_overwritten(detector: AnomalyDetector, tmp_path: Path) -> None:
    save_at(detector, tmp_path, AT)
    with pytest.raises(Conflict, match="already exists"):
        save_at(detector, tmp_path, AT)


def test_list_activate_and_active_round_trip(detector: AnomalyDetector, tmp_path: Path) -> None:
    assert list_versions(tmp_path / "absent") == []
    assert active_version(tmp_path) is None
    later = save_at(detector, tmp_path, AT + timedelta(days=1))
    earlier = save_at(detector, tmp_path, AT)
    listed = list_versions(tmp_path)
    assert [info.version for info in listed] == [earlier.version, later.version]
    assert not any(info.active for info in listed)
    assert listed[0].feature_names == tuple(FEATURES)
    assert listed[0].threshold == detector.threshold_
    assert listed[0].created_at == AT
    assert listed[0].sklearn_version == sklearn.__version__

    activate(tmp_path, later.version)
    assert active_version(tmp_path) == later.version
    assert [info.active for info in list_versions(tmp_path)] == [False, True]
    activate(tmp_path, earlier.version)
    assert active_version(tmp_path) == earlier.version
    assert [info.active for info in list_versions(tmp_path)] == [True, False]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [ACTIVE_FILE]


@pytest.mark.parametrize("version", ["20990101-000000-deadbeef", "../elsewhere", "ACTIVE"])
def test_activating_or_loading_an_unknown_version_is_refused(
    detector: AnomalyDetector, tmp_path: Path, version: str
) -> None:
    known = save_at(detector, tmp_path, AT)
    activate(tmp_path, known.version)
    with pytest.raises(NotFound, match=f"model version '{version}' not found"):
        activate(tmp_path, version)
    with pytest.raises(NotFound):
        load(tmp_path, version)
    assert active_version(tmp_path) == known.version


def test_malformed_metadata_is_reported_not_skipped(
    detector: AnomalyDetector, tmp_path: Path
) -> None:
    artefact = save_at(detector, tmp_path, AT)
    (artefact.path / METADATA_FILE).write_text("{}")
    with pytest.raises(UnreadableModel, match="malformed") as caught:
        list_versions(tmp_path)
    assert isinstance(caught.value, InvalidInput)


def test_active_pointer_is_replaced_never_rewritten_in_place(
    detector: AnomalyDetector, tmp_path: Path
) -> None:
    first = save_at(detector, tmp_path, AT)
    second = save_at(detector, tmp_path, AT + timedelta(seconds=1))
    activate(tmp_path, first.version)
    pointer = tmp_path / ACTIVE_FILE
    with pointer.open() as held:
        activate(tmp_path, second.version)
        # A reader that opened the pointer before the switch still reads a whole old
        # value: the new one went into a new file renamed over the name.
        assert held.read() == f"{first.version}\n"
    assert pointer.read_text() == f"{second.version}\n"


def test_a_polling_reader_never_sees_a_partial_pointer(
    detector: AnomalyDetector, tmp_path: Path
) -> None:
    versions = [save_at(detector, tmp_path, AT + timedelta(seconds=s)).version for s in (0, 1)]
    activate(tmp_path, versions[0])
    seen: list[str | None] = []
    done = threading.Event()

    def poll() -> None:
        while True:  # at least one read, even if the writer finishes first
            seen.append(active_version(tmp_path))
            if done.is_set():
                return

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for switch in range(300):
            activate(tmp_path, versions[switch % 2])
    finally:
        done.set()
        reader.join()
    assert seen
    assert set(seen) <= set(versions)
