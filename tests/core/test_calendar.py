"""Bank-local days and working-day arithmetic, on the packaged mainland-China calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

import core.calendar
from core.calendar import DateOutsideCalendar, WorkingCalendar, bank_day
from core.errors import InvalidInput
from rules.reference_data import load_calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def china() -> WorkingCalendar:
    return load_calendar()


# --------------------------------------------------------------------------- bank_day


def test_bank_day_uses_the_bank_time_zone_not_utc() -> None:
    late_evening = datetime.fromisoformat("2026-03-01T23:59:59+08:00")
    same_instant_plus_one = datetime.fromisoformat("2026-03-01T16:00:00Z")
    assert bank_day(late_evening, SHANGHAI) == date(2026, 3, 1)
    # 16:00 UTC is midnight in Shanghai: already the next bank day.
    assert bank_day(same_instant_plus_one, SHANGHAI) == date(2026, 3, 2)
    assert bank_day(datetime.fromisoformat("2026-03-01T15:59:59Z"), SHANGHAI) == date(2026, 3, 1)


def test_bank_day_has_no_dst_jump_in_shanghai() -> None:
    # Every UTC hour of 2026 lands on the day of (UTC + 8h): no daylight-saving shift.
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    while moment.year == 2026:
        assert bank_day(moment, SHANGHAI) == (moment + timedelta(hours=8)).date()
        moment += timedelta(hours=1)


def test_bank_day_accepts_a_fixed_offset_tzinfo() -> None:
    moment = datetime.fromisoformat("2026-03-01T16:30:00+00:00")
    assert bank_day(moment, timezone(timedelta(hours=8))) == date(2026, 3, 2)


def test_bank_day_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        bank_day(datetime(2026, 3, 1, 12, 0), SHANGHAI)


# --------------------------------------------------------------------------- the packaged calendar


def test_packaged_calendar_covers_2024_to_2026(china: WorkingCalendar) -> None:
    assert china.years == range(2024, 2027)
    assert china.as_of == date(2025, 11, 4)
    assert "国务院办公厅" in china.source


def test_spring_festival_2026(china: WorkingCalendar) -> None:
    # 2月15日至23日放假调休, 2月14日(周六)、2月28日(周六)上班.
    for offset in range(9):
        assert not china.is_working_day(date(2026, 2, 15) + timedelta(days=offset))
    assert china.is_working_day(date(2026, 2, 24))
    assert china.is_working_day(date(2026, 2, 14))  # make-up Saturday
    assert china.is_working_day(date(2026, 2, 28))  # make-up Saturday


def test_spring_festival_2025_and_2024(china: WorkingCalendar) -> None:
    assert not china.is_working_day(date(2025, 1, 28))  # 除夕
    assert not china.is_working_day(date(2025, 2, 4))
    assert china.is_working_day(date(2025, 1, 26))  # make-up Sunday
    assert china.is_working_day(date(2025, 2, 8))  # make-up Saturday
    assert not china.is_working_day(date(2024, 2, 12))
    assert china.is_working_day(date(2024, 2, 9))  # 除夕 2024 was not an official holiday
    assert china.is_working_day(date(2024, 2, 4))  # make-up Sunday


def test_national_day_golden_week(china: WorkingCalendar) -> None:
    for offset in range(7):
        assert not china.is_working_day(date(2026, 10, 1) + timedelta(days=offset))
    assert china.is_working_day(date(2026, 9, 20))  # make-up Sunday
    assert china.is_working_day(date(2026, 10, 10))  # make-up Saturday
    assert not china.is_working_day(date(2026, 10, 11))  # an ordinary Sunday
    # 2025 merged with Mid-Autumn: eight days, 10-01 to 10-08.
    assert not china.is_working_day(date(2025, 10, 8))
    assert china.is_working_day(date(2025, 10, 11))


def test_ordinary_weekends_and_weekdays(china: WorkingCalendar) -> None:
    assert china.is_working_day(date(2026, 3, 6))  # Friday
    assert not china.is_working_day(date(2026, 3, 7))  # Saturday
    assert not china.is_working_day(date(2026, 3, 8))  # Sunday


def test_friday_plus_five_working_days_crosses_one_weekend(china: WorkingCalendar) -> None:
    assert china.add_working_days(date(2026, 3, 6), 5) == date(2026, 3, 13)
    assert china.working_days_between(date(2026, 3, 6), date(2026, 3, 13)) == 5


def test_large_value_report_deadline_across_national_day(china: WorkingCalendar) -> None:
    # 10-08 (Thu), 10-09 (Fri), 10-10 (make-up Sat), 10-12 (Mon), 10-13 (Tue).
    assert china.add_working_days(date(2026, 9, 30), 5) == date(2026, 10, 13)
    # A transaction on a holiday counts from the same place.
    assert china.add_working_days(date(2026, 10, 3), 5) == date(2026, 10, 13)


def test_deadline_across_spring_festival_uses_the_make_up_saturday(
    china: WorkingCalendar,
) -> None:
    # 02-14 (make-up Sat), then 02-24, 02-25, 02-26, 02-27.
    assert china.add_working_days(date(2026, 2, 13), 5) == date(2026, 2, 27)
    assert china.add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 14)


def test_working_days_backwards_and_between(china: WorkingCalendar) -> None:
    assert china.add_working_days(date(2026, 2, 24), -1) == date(2026, 2, 14)
    assert china.add_working_days(date(2026, 2, 24), 0) == date(2026, 2, 24)
    assert china.working_days_between(date(2026, 2, 13), date(2026, 2, 27)) == 5
    assert china.working_days_between(date(2026, 2, 27), date(2026, 2, 13)) == -5
    assert china.working_days_between(date(2026, 2, 16), date(2026, 2, 16)) == 0
    # Round trip over a whole covered year.
    start = date(2025, 1, 2)
    for n in range(0, 240, 7):
        end = china.add_working_days(start, n)
        assert china.working_days_between(start, end) == n


def test_out_of_range_year_is_refused(china: WorkingCalendar) -> None:
    with pytest.raises(DateOutsideCalendar, match="covers 2024-2026") as refused:
        china.is_working_day(date(2027, 1, 4))
    assert isinstance(refused.value, InvalidInput)
    assert refused.value.day == date(2027, 1, 4)
    with pytest.raises(DateOutsideCalendar):
        china.add_working_days(date(2023, 12, 29), 1)
    with pytest.raises(DateOutsideCalendar):
        china.working_days_between(date(2026, 12, 1), date(2027, 1, 5))


def test_a_deadline_running_past_the_covered_years_is_refused(china: WorkingCalendar) -> None:
    # 2026-12-28 (Mon) + 5 reaches into 2027, whose holidays are unknown here.
    with pytest.raises(DateOutsideCalendar, match="covers 2027") as refused:
        china.add_working_days(date(2026, 12, 28), 5)
    assert refused.value.day == date(2027, 1, 1)
    assert china.add_working_days(date(2026, 12, 28), 3) == date(2026, 12, 31)
    with pytest.raises(DateOutsideCalendar, match="covers 2023"):
        china.add_working_days(date(2024, 1, 3), -3)


# --------------------------------------------------------------------------- construction


def test_explicit_year_range_and_validation() -> None:
    calendar = WorkingCalendar(
        holidays=frozenset({date(2030, 1, 1)}),
        working_weekends=frozenset(),
        as_of=None,
        source="test",
        first_year=2030,
        last_year=2031,
    )
    assert calendar.years == range(2030, 2032)
    assert calendar.is_working_day(date(2031, 1, 1))  # no 2031 holidays were given
    with pytest.raises(InvalidInput, match="not a Saturday or Sunday"):
        WorkingCalendar(frozenset(), frozenset({date(2030, 1, 2)}), None, "test")
    with pytest.raises(InvalidInput, match="both a holiday and a working day"):
        WorkingCalendar(frozenset({date(2030, 1, 5)}), frozenset({date(2030, 1, 5)}), None, "t")
    with pytest.raises(InvalidInput, match="outside its years"):
        WorkingCalendar(frozenset({date(2029, 1, 1)}), frozenset(), None, "t", 2030, 2030)
    with pytest.raises(InvalidInput, match="needs dates"):
        WorkingCalendar(frozenset(), frozenset(), None, "t")


# --------------------------------------------------------------------------- past the data


def test_past_the_covered_years_every_day_counts_when_asked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(core.calendar, "_PROVISIONAL_YEARS_LOGGED", set())
    calendar = load_calendar(earliest_beyond=True)

    # Mon 2026-12-28 + 5: 29-31 December, then 1 and 2 January 2027 (a holiday and a
    # Saturday in any real schedule) count too: the earliest the deadline can be.
    assert calendar.add_working_days(date(2026, 12, 28), 5) == date(2027, 1, 2)
    assert calendar.is_working_day(date(2027, 1, 3))
    assert calendar.working_days_between(date(2026, 12, 28), date(2027, 1, 2)) == 5
    assert calendar.add_working_days(date(2027, 1, 10), -3) == date(2027, 1, 7)
    assert calendar.add_working_days(date(2027, 1, 2), -3) == date(2026, 12, 30)
    start = date(2026, 11, 20)
    for n in range(0, 60, 3):
        end = calendar.add_working_days(start, n)
        assert calendar.working_days_between(start, end) == n
    assert "no holiday data for 2027" in caplog.text
    # Before the data nothing changes: still refused.
    with pytest.raises(DateOutsideCalendar):
        calendar.add_working_days(date(2023, 12, 29), 1)
    with pytest.raises(DateOutsideCalendar):
        calendar.is_working_day(date(2023, 6, 1))


def test_counting_every_day_past_the_data_is_never_later_than_the_real_schedule() -> None:
    # A made-up 2031 with a week-long holiday and two make-up Saturdays around it.
    holidays = frozenset({date(2030, 1, 1)} | {date(2031, 2, d) for d in range(3, 10)})
    make_up = frozenset({date(2031, 2, 1), date(2031, 2, 15)})
    known = WorkingCalendar(holidays, make_up, as_of=None, source="test")
    guessed = WorkingCalendar(
        frozenset({date(2030, 1, 1)}),
        frozenset(),
        as_of=None,
        source="test",
        last_year=2030,
        earliest_beyond=True,
    )
    for offset in range(0, 70):
        day = date(2030, 12, 1) + timedelta(days=offset)
        for n in (1, 3, 5, 10, 20):
            assert guessed.add_working_days(day, n) <= known.add_working_days(day, n)
