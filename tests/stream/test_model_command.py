"""``amlwatch model list|activate`` over a registry made in the test's directory."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from models.detector import AnomalyDetector
from models.features import FEATURE_NAMES, ONE_SIDED_FEATURES
from models.registry import METADATA_FILE, active_version, save
from models.training import DEFAULT_TARGET_ALERT_RATE
from stream.model_command import model_cli
from stream.simulator import (
    Typology,
    derive_rng,
    generate_history,
    generate_reference,
    write_customers_csv,
    write_transactions_csv,
)

app = typer.Typer()
app.add_typer(model_cli, name="model")
# Wide enough that rich never folds a version string in the table.
runner = CliRunner(env={"COLUMNS": "200"})
AT = datetime(2025, 4, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def registry(tmp_path: Path) -> tuple[Path, list[str]]:
    directory = tmp_path / "models"
    detector = AnomalyDetector(n_estimators=5, random_state=0)
    detector.fit(np.random.default_rng(0).normal(size=(40, 2)))
    versions = [
        save(
            detector,
            directory=directory,
            feature_names=["amount_z", "daily_count"],
            training_data_hash="sha256:00",
            training_period=(date(2025, 1, 1), date(2025, 3, 31)),
            metrics=None,
            created_at=AT + timedelta(hours=hours),
        ).version
        for hours in (0, 1)
    ]
    return directory, versions


def simulated_files(
    directory: Path, *, seed: int, customers: int, days: int, known_customers: int | None = None
) -> list[str]:
    """Write tx.csv and customers.csv of a simulated history; the CLI options naming them."""
    rng = derive_rng(seed, "model-command")
    people, _managers = generate_reference(rng, customers, 2, as_of=date(2026, 1, 1))
    history = generate_history(rng, people, start=date(2026, 1, 1), days=days, scenario_rate=20.0)
    write_transactions_csv(directory / "tx.csv", history)
    write_customers_csv(directory / "customers.csv", people[:known_customers])
    return ["--transactions", str(directory / "tx.csv"),
            "--customers", str(directory / "customers.csv")]  # fmt: skip


def row_of(output: str, version: str) -> str:
    return next(line for line in output.splitlines() if version in line)


def test_list_shows_every_version_and_marks_the_active_one(
    registry: tuple[Path, list[str]],
) -> None:
    directory, (first, second) = registry
    listed = runner.invoke(app, ["model", "list", "--models", str(directory)])
    assert listed.exit_code == 0, listed.output
    assert "2025-04-01 09:30:00" in row_of(listed.output, first)
    assert "*" not in row_of(listed.output, first) + row_of(listed.output, second)

    activated = runner.invoke(app, ["model", "activate", second, "--models", str(directory)])
    assert activated.exit_code == 0, activated.output
    assert f"active model: {second}" in activated.output
    assert active_version(directory) == second
    listed = runner.invoke(app, ["model", "list", "--models", str(directory)])
    assert "*" in row_of(listed.output, second)
    assert "*" not in row_of(listed.output, first)


def test_activating_an_unknown_version_fails_and_keeps_the_active_one(
    registry: tuple[Path, list[str]],
) -> None:
    directory, (first, _second) = registry
    runner.invoke(app, ["model", "activate", first, "--models", str(directory)])
    result = runner.invoke(
        app, ["model", "activate", "20990101-000000-deadbeef", "--models", str(directory)]
    )
    assert result.exit_code == 1
    assert "model version '20990101-000000-deadbeef' not found" in result.output
    assert active_version(directory) == first


def test_a_model_of_another_scikit_learn_is_listed_and_activated_with_a_warning(
    registry: tuple[Path, list[str]],
) -> None:
    directory, (first, second) = registry
    path = directory / first / METADATA_FILE
    written = json.loads(path.read_text())
    written["library_versions"]["scikit-learn"] = "1.4.2"
    path.write_text(json.dumps(written))
    warning = f"warning: {first} was saved with scikit-learn 1.4.2"
    listed = runner.invoke(app, ["model", "list", "--models", str(directory)])
    assert listed.exit_code == 0
    assert warning in listed.stderr
    assert second not in listed.stderr
    activated = runner.invoke(app, ["model", "activate", first, "--models", str(directory)])
    assert activated.exit_code == 0
    assert warning in activated.stderr
    assert active_version(directory) == first


def test_default_registry_is_under_the_data_dir(
    registry: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, (first, _second) = registry
    monkeypatch.setenv("AMLWATCH_DATA_DIR", str(directory.parent))
    listed = runner.invoke(app, ["model", "list"])
    assert listed.exit_code == 0, listed.output
    assert first in listed.output
    monkeypatch.setenv("AMLWATCH_DATA_DIR", str(directory.parent / "empty"))
    empty = runner.invoke(app, ["model", "list"])
    assert empty.exit_code == 0
    assert "no models in" in empty.output


def test_train_fits_on_a_simulated_history_and_saves_a_loadable_version(tmp_path: Path) -> None:
    files = simulated_files(tmp_path, seed=4, customers=40, days=30)
    directory = tmp_path / "models"

    result = runner.invoke(
        app,
        ["model", "train", *files, "--out", str(directory)],
    )

    assert result.exit_code == 0, result.output
    [version] = [p.name for p in directory.iterdir() if not p.name.startswith((".", "ACTIVE"))]
    metadata = json.loads((directory / version / METADATA_FILE).read_text())
    assert metadata["feature_names"] == list(FEATURE_NAMES)
    # The 7-day warm-up only builds profiles; training starts after it.
    assert metadata["training_period"]["start"] == "2026-01-08"
    assert set(metadata["metrics"]["recall_by_typology"]) <= {t.value for t in Typology}
    assert metadata["metrics"]["alert_rate"] <= 0.01
    assert f"amlwatch model activate {version}" in result.output
    assert active_version(directory) is None, "training never activates by itself"


def test_train_until_a_day_leaves_the_later_days_out(tmp_path: Path) -> None:
    files = simulated_files(tmp_path, seed=4, customers=40, days=30)
    directory = tmp_path / "models"

    result = runner.invoke(
        app, ["model", "train", *files, "--out", str(directory), "--until", "2026-01-20"]
    )

    assert result.exit_code == 0, result.output
    [version] = [p.name for p in directory.iterdir() if not p.name.startswith((".", "ACTIVE"))]
    metadata = json.loads((directory / version / METADATA_FILE).read_text())
    assert metadata["training_period"] == {"start": "2026-01-08", "end": "2026-01-20"}
    # The tuned detector counts only the risky side of the one-sided features.
    assert metadata["hyperparameters"]["one_sided"] == list(ONE_SIDED_FEATURES)
    assert metadata["target_alert_rate"] == DEFAULT_TARGET_ALERT_RATE


def test_train_reports_customers_missing_from_the_customers_file(tmp_path: Path) -> None:
    files = simulated_files(tmp_path, seed=5, customers=10, days=10, known_customers=5)

    result = runner.invoke(
        app,
        ["model", "train", *files, "--out", str(tmp_path / "m")],
    )

    assert result.exit_code == 2
    assert "are not in customers.csv" in result.output


def test_backtest_scores_with_the_active_model_and_explains_its_alerts(tmp_path: Path) -> None:
    from stream.backtest_command import backtest

    common = simulated_files(tmp_path, seed=6, customers=60, days=40)
    models = tmp_path / "models"
    app = typer.Typer()
    app.add_typer(model_cli, name="model")
    app.command("backtest")(backtest)
    # Ten times the default alert budget, so that a small file surely has anomaly alerts.
    trained = runner.invoke(
        app, ["model", "train", *common, "--out", str(models), "--target-alert-rate", "0.005"]
    )
    assert trained.exit_code == 0, trained.output
    [version] = [p.name for p in models.iterdir() if not p.name.startswith((".", "ACTIVE"))]
    assert (
        runner.invoke(app, ["model", "activate", version, "--models", str(models)]).exit_code == 0
    )

    with_model = runner.invoke(
        app, ["backtest", *common, "--out", str(tmp_path / "a.jsonl"), "--models", str(models)]
    )
    rules_only = runner.invoke(
        app, ["backtest", *common, "--out", str(tmp_path / "b.jsonl"), "--no-model"]
    )

    assert with_model.exit_code == 0, with_model.output
    assert rules_only.exit_code == 0, rules_only.output
    alerts = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    anomalies = [a for a in alerts if a["detector"] == "anomaly"]
    assert anomalies, "a trained model flags some of the simulated scenarios"
    assert all(a["detector_version"] == version for a in anomalies)
    assert all(1 <= len(a["reasons"]) <= 3 for a in anomalies)
    without = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [a for a in alerts if a["detector"] != "anomaly"] == without
    assert "model" in with_model.output and "both" in with_model.output
