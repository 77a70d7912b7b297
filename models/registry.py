"""Model registry on the filesystem: one directory per version and an ``ACTIVE`` pointer.

Layout::

    <directory>/
        ACTIVE                      the active version, replaced atomically
        20250401-093000-1a2b3c4d/   one version: never changed once written
            model.pkl
            metadata.json

The pickle is only as trustworthy as the directory it is read from: unpickling runs code,
so the registry must be writable by the operators only. The metadata records a SHA-256 of
the pickle, checked before it is unpickled, and the library versions it was saved with.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import platform
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import sklearn  # type: ignore[import-untyped]

from core.errors import Conflict, InvalidInput, NotFound
from models.detector import AnomalyDetector

MODEL_FILE = "model.pkl"
METADATA_FILE = "metadata.json"
ACTIVE_FILE = "ACTIVE"
FORMAT_VERSION = 1
# Sortable by creation time; the hash part tells same-second saves apart.
_VERSION_PATTERN = re.compile(r"\d{8}-\d{6}-[0-9a-f]{8}")


class IncompatibleModel(Conflict):
    """A saved model this process must not use: other scikit-learn or other features."""


class UnreadableModel(InvalidInput):
    """A version directory whose metadata or pickle is missing, malformed or altered."""


@dataclass(frozen=True)
class ModelMetadata:
    """What ``metadata.json`` records beside a saved detector."""

    version: str
    created_at: datetime
    feature_names: tuple[str, ...]
    hyperparameters: Mapping[str, Any]
    training_data_hash: str
    training_period: tuple[date, date]
    library_versions: Mapping[str, str]
    threshold: float
    target_alert_rate: float
    metrics: Mapping[str, Any] | None
    model_sha256: str
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``metadata.json``."""
        return {
            "format_version": self.format_version,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "feature_names": list(self.feature_names),
            "hyperparameters": dict(self.hyperparameters),
            "training_data_hash": self.training_data_hash,
            "training_period": {
                "start": self.training_period[0].isoformat(),
                "end": self.training_period[1].isoformat(),
            },
            "library_versions": dict(self.library_versions),
            "threshold": self.threshold,
            "target_alert_rate": self.target_alert_rate,
            "metrics": None if self.metrics is None else dict(self.metrics),
            "model_sha256": self.model_sha256,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelMetadata:
        """Parse what ``to_json`` wrote; KeyError, TypeError or ValueError when malformed."""
        period = data["training_period"]
        return cls(
            version=str(data["version"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            feature_names=tuple(str(name) for name in data["feature_names"]),
            hyperparameters=dict(data["hyperparameters"]),
            training_data_hash=str(data["training_data_hash"]),
            training_period=(
                date.fromisoformat(period["start"]),
                date.fromisoformat(period["end"]),
            ),
            library_versions={str(k): str(v) for k, v in data["library_versions"].items()},
            threshold=float(data["threshold"]),
            target_alert_rate=float(data["target_alert_rate"]),
            metrics=None if data["metrics"] is None else dict(data["metrics"]),
            model_sha256=str(data["model_sha256"]),
            format_version=int(data["format_version"]),
        )


@dataclass(frozen=True)
class ModelArtefact:
    """A saved version: its directory and its metadata."""

    version: str
    path: Path
    metadata: ModelMetadata


@dataclass(frozen=True)
class ModelArtefactInfo:
    """One line of the registry listing."""

    version: str
    path: Path
    created_at: datetime
    feature_names: tuple[str, ...]
    threshold: float
    target_alert_rate: float
    sklearn_version: str
    active: bool


def library_versions() -> dict[str, str]:
    """Versions of the libraries a pickled detector depends on, as this process has them."""
    return {
        "python": platform.python_version(),
        "scikit-learn": str(sklearn.__version__),
        "numpy": str(np.__version__),
        "pandas": str(pd.__version__),
    }


def save(
    detector: AnomalyDetector,
    *,
    directory: Path,
    feature_names: Sequence[str],
    training_data_hash: str,
    training_period: tuple[date, date],
    metrics: Mapping[str, Any] | None,
    created_at: datetime | None = None,
) -> ModelArtefact:
    """Write a fitted detector and its metadata as a new version directory; never overwrites."""
    names = tuple(feature_names)
    _check_saveable(detector, names, training_period, created_at)
    created = (created_at or datetime.now(UTC)).astimezone(UTC)
    model_bytes = pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL)
    digest = hashlib.sha256(model_bytes).hexdigest()
    version = f"{created:%Y%m%d-%H%M%S}-{digest[:8]}"
    metadata = ModelMetadata(
        version=version,
        created_at=created,
        feature_names=names,
        hyperparameters=_as_json_values(detector.get_params()),
        training_data_hash=training_data_hash,
        training_period=training_period,
        library_versions=library_versions(),
        threshold=detector.threshold_,
        target_alert_rate=float(detector.target_alert_rate),
        metrics=metrics,
        model_sha256=digest,
    )
    # Serialise before touching the disk, so unserialisable metrics leave nothing behind.
    metadata_text = json.dumps(metadata.to_json(), indent=2, sort_keys=True)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / version
    if target.exists():
        raise Conflict(f"model version {version} already exists in {directory}")
    # Build the version in a hidden directory and rename it into place, so a listing or a
    # loader never sees a version without its pickle or metadata.
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=directory))
    try:
        _write_durably(staging / MODEL_FILE, model_bytes)
        _write_durably(staging / METADATA_FILE, metadata_text.encode() + b"\n")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _sync_directory(directory)
    return ModelArtefact(version=version, path=target, metadata=metadata)


def load(
    directory: Path, version: str, *, expected_features: Sequence[str] | None = None
) -> tuple[AnomalyDetector, ModelMetadata]:
    """The detector and metadata of a version; IncompatibleModel if this process can't use it."""
    path = _version_path(directory, version)
    metadata = read_metadata(directory, version)
    saved_with = metadata.library_versions.get("scikit-learn", "unknown")
    running = str(sklearn.__version__)
    if saved_with != running:
        raise IncompatibleModel(
            f"model {version} was saved with scikit-learn {saved_with}, this process runs "
            f"scikit-learn {running}: retrain it, or run with scikit-learn {saved_with}"
        )
    if expected_features is not None and tuple(expected_features) != metadata.feature_names:
        raise IncompatibleModel(
            f"model {version} was trained on features {list(metadata.feature_names)}, "
            f"expected {list(expected_features)}"
        )
    model_bytes = (path / MODEL_FILE).read_bytes()
    if hashlib.sha256(model_bytes).hexdigest() != metadata.model_sha256:
        raise UnreadableModel(f"model {version}: {MODEL_FILE} does not match its recorded hash")
    detector = pickle.loads(model_bytes)
    if not isinstance(detector, AnomalyDetector):
        raise UnreadableModel(f"model {version}: {MODEL_FILE} holds {type(detector).__name__}")
    return detector, metadata


def read_metadata(directory: Path, version: str) -> ModelMetadata:
    """The metadata of a version, without unpickling its model."""
    path = _version_path(directory, version) / METADATA_FILE
    try:
        return ModelMetadata.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise UnreadableModel(f"model {version}: {path} is missing") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UnreadableModel(f"model {version}: {path} is malformed ({exc!r})") from None


def list_versions(directory: Path) -> list[ModelArtefactInfo]:
    """Every saved version, oldest first, with the active one marked."""
    if not directory.is_dir():
        return []
    active = active_version(directory)
    versions = sorted(
        entry.name
        for entry in directory.iterdir()
        if entry.is_dir() and _VERSION_PATTERN.fullmatch(entry.name)
    )
    infos = []
    for version in versions:
        metadata = read_metadata(directory, version)
        infos.append(
            ModelArtefactInfo(
                version=version,
                path=directory / version,
                created_at=metadata.created_at,
                feature_names=metadata.feature_names,
                threshold=metadata.threshold,
                target_alert_rate=metadata.target_alert_rate,
                sklearn_version=metadata.library_versions.get("scikit-learn", "unknown"),
                active=version == active,
            )
        )
    return infos


def activate(directory: Path, version: str) -> None:
    """Point ``ACTIVE`` at a saved version; readers see the old or the new name, never half."""
    _version_path(directory, version)
    # Write a sibling temp file and rename it over the pointer: os.replace is atomic on
    # one filesystem, whereas rewriting ACTIVE in place would show pollers an empty file.
    descriptor, temporary = tempfile.mkstemp(prefix=f".{ACTIVE_FILE}-", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(f"{version}\n".encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, directory / ACTIVE_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_directory(directory)


def active_version(directory: Path) -> str | None:
    """The version ``ACTIVE`` names, or None when no version was ever activated."""
    try:
        text = (directory / ACTIVE_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def _version_path(directory: Path, version: str) -> Path:
    # The pattern check also keeps a version argument such as "../x" out of other paths.
    path = directory / version
    if not _VERSION_PATTERN.fullmatch(version) or not path.is_dir():
        raise NotFound(f"model version {version!r} not found in {directory}")
    return path


def _check_saveable(
    detector: AnomalyDetector,
    feature_names: tuple[str, ...],
    training_period: tuple[date, date],
    created_at: datetime | None,
) -> None:
    if not hasattr(detector, "threshold_"):
        raise ValueError("only a fitted detector can be saved; call fit first")
    fitted_names = getattr(detector, "feature_names_in_", None)
    if fitted_names is not None and tuple(fitted_names) != feature_names:
        raise ValueError(
            f"feature_names {list(feature_names)} differ from the names the detector was "
            f"fitted with, {list(fitted_names)}"
        )
    if len(feature_names) != detector.n_features_in_:
        raise ValueError(
            f"{len(feature_names)} feature names given for a detector fitted on "
            f"{detector.n_features_in_} features"
        )
    start, end = training_period
    if start > end:
        raise ValueError(f"training period starts {start} after it ends {end}")
    if created_at is not None and created_at.utcoffset() is None:
        raise ValueError("created_at must be timezone-aware")


def _as_json_values(params: Mapping[str, Any]) -> dict[str, Any]:
    # A hyperparameter such as a RandomState instance has no JSON form: record its repr.
    plain = (str, int, float, bool, type(None))

    def as_json(value: Any) -> Any:
        if isinstance(value, plain):
            return value
        if isinstance(value, tuple | list) and all(isinstance(item, plain) for item in value):
            return list(value)  # e.g. the detector's one_sided feature names
        return repr(value)

    return {name: as_json(value) for name, value in params.items()}


def _write_durably(path: Path, content: bytes) -> None:
    with path.open("xb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_directory(directory: Path) -> None:
    # Makes the rename itself survive a power cut; not every platform can open a directory.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
