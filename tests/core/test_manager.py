"""Manager reference records: CSV rows in, validated records out, errors located."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.customer import ReferenceRowError
from core.manager import MANAGER_COLUMNS, Manager, ManagerGrade, read_managers_csv

HEADER = ",".join(MANAGER_COLUMNS)


def write(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "managers.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_reads_managers_with_grade_supervisor_and_active(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "M0001,王伟,wang.wei@bank.example,senior,,Shanghai,true",
        "M0002,李娜,li.na@bank.example,junior,M0001,Shanghai,false",
    )
    boss, junior = read_managers_csv(path)
    assert boss.grade is ManagerGrade.SENIOR and boss.supervisor_id is None and boss.active
    assert junior.grade is ManagerGrade.JUNIOR
    assert junior.supervisor_id == "M0001" and not junior.active
    assert junior.to_row()["active"] == "false" and boss.to_row()["supervisor_id"] == ""


def test_row_round_trips_through_to_row(tmp_path: Path) -> None:
    manager = Manager("M0003", "张杰", "zhang@bank.example", "intermediate", "M0001", "HZ", True)
    path = write(tmp_path, ",".join(manager.to_row()[column] for column in MANAGER_COLUMNS))
    assert list(read_managers_csv(path)) == [manager]


def test_repr_keeps_names_and_email_out() -> None:
    manager = Manager("M0003", "张杰", "zhang@bank.example", ManagerGrade.SENIOR, None, "HZ", True)
    assert "张杰" not in repr(manager) and "zhang@" not in repr(manager)


def test_string_grade_is_checked() -> None:
    with pytest.raises(ValueError):
        Manager("M1", "n", "a@b", "chief", None, "HZ", True)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("M0002,李娜,li.na@bank.example,boss,M0001,SH,true", "grade"),
        ("M0002,李娜,not-an-address,junior,M0001,SH,true", "email"),
        ("M0002,李娜,li.na@bank.example,junior,M0001,SH,maybe", "active"),
        ("M0002,李娜,li.na@bank.example,junior,M0002,SH,true", "supervisor_id"),
        (",李娜,li.na@bank.example,junior,M0001,SH,true", "manager_id"),
        ("M0002,,li.na@bank.example,junior,M0001,SH,true", "name"),
        (f"{'M' * 65},李娜,li.na@bank.example,junior,M0001,SH,true", "manager_id"),
        (f"M0002,李娜,li.na@bank.example,junior,{'M' * 65},SH,true", "supervisor_id"),
        (f"M0002,李娜,li.na@bank.example,junior,M0001,{'分行' * 101},true", "branch"),
    ],
)
def test_bad_row_names_line_and_field(tmp_path: Path, row: str, field: str) -> None:
    path = write(tmp_path, "M0001,王伟,wang.wei@bank.example,senior,,SH,true", row)
    with pytest.raises(ReferenceRowError) as raised:
        list(read_managers_csv(path))
    assert raised.value.line == 3
    assert raised.value.field == field


def test_missing_column_is_reported_on_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, header="manager_id,name,email,grade,supervisor_id,branch")
    with pytest.raises(ReferenceRowError) as raised:
        list(read_managers_csv(path))
    assert (raised.value.line, raised.value.field) == (1, "active")
