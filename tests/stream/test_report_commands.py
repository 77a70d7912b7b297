"""``amlwatch report``: bad input exits 2 naming the problem and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stream.cli import cli


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    return CliRunner(env={"AMLWATCH_DATABASE_URL": url, "COLUMNS": "200"})


BASE = ["report", "export", "--from", "2026-03-01", "--to", "2026-03-31", "--actor", "co1"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--kind", "monthly", "--format", "csv"], "unknown report kind 'monthly'"),
        (["--kind", "large-value", "--format", "pdf"], "unknown format 'pdf'"),
        (["--kind", "suspicious", "--format", "csv", "--message-type", "x"], "unknown message"),
    ],
)
def test_bad_options_exit_2_and_write_nothing(
    runner: CliRunner, tmp_path: Path, options: list[str], message: str
) -> None:
    out = tmp_path / "out.file"
    result = runner.invoke(cli, [*BASE, *options, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_bad_dates_are_named(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        cli,
        ["report", "export", "--kind", "large-value", "--from", "2026-02-30", "--to",
         "2026-03-01", "--format", "csv", "--out", str(tmp_path / "x.csv"), "--actor", "co1"],
    )  # fmt: skip
    assert result.exit_code == 2 and "bad dates" in result.output


def test_empty_period_exports_and_says_so(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "lv.xml"
    result = runner.invoke(
        cli, [*BASE, "--kind", "large-value", "--format", "pboc-xml", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "empty period" in result.output and out.exists()
    again = runner.invoke(
        cli, [*BASE, "--kind", "large-value", "--format", "pboc-xml", "--out", str(out)]
    )
    assert again.exit_code == 2 and "--overwrite" in again.output
    status = runner.invoke(cli, ["report", "status"])
    assert status.exit_code == 0 and "no report records yet" in status.output
    verify = runner.invoke(cli, ["audit", "verify"])
    assert verify.exit_code == 0 and "audit chain intact: 1 events" in verify.output


def test_mark_submitted_of_an_unknown_export_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["report", "mark-submitted", "9", "--receipt", "R", "--actor", "c"])
    assert result.exit_code == 2 and "report export 9 not found" in result.output
