"""Bank-local calendar days and working days (holidays and China's 调休 make-up days).

Regulatory deadlines count working days: the PBoC large-value report is due within five
working days of the transaction. A working calendar only knows the years its holiday
data covers. Outside them it refuses to answer by default: a deadline computed from a
calendar that silently treats next year's Spring Festival as ordinary weekdays is worse
than an error. A calendar built with ``earliest_beyond`` instead counts every day after
its last year as a working day, which gives the earliest deadline the real schedule
could give (holidays only push a deadline later; a make-up working weekend is still a
day), and says so in the log: the case store uses it, so a detection past the horizon
becomes a case with a deadline that is early rather than no case at all.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from core.errors import InvalidInput

SATURDAY = 5
log = logging.getLogger(__name__)
# Years already reported as counted provisionally, so the log says it once per process.
_PROVISIONAL_YEARS_LOGGED: set[int] = set()


def bank_day(moment: datetime, tz: tzinfo) -> date:
    """The calendar day of an aware ``moment`` in the bank's time zone ``tz``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("bank_day needs an aware datetime (one with a UTC offset)")
    return moment.astimezone(tz).date()


class DateOutsideCalendar(InvalidInput):
    """A date the working calendar has no holiday data for."""

    def __init__(self, day: date, first_year: int, last_year: int, as_of: date | None) -> None:
        dated = f", holiday data as of {as_of.isoformat()}" if as_of else ""
        super().__init__(
            f"{day.isoformat()} is outside the working calendar, which covers "
            f"{first_year}-{last_year}{dated}; load holiday data that covers {day.year}"
        )
        self.day = day
        self.first_year = first_year
        self.last_year = last_year


@dataclass(frozen=True)
class WorkingCalendar:
    """Working days of the covered years: weekdays minus holidays, plus make-up days.

    ``first_year`` and ``last_year`` default to the years of the earliest and latest
    listed date; every question about a day outside them raises DateOutsideCalendar,
    except, with ``earliest_beyond``, days after them: each of those counts as a
    working day (see the module's docstring).
    """

    holidays: frozenset[date]
    working_weekends: frozenset[date]
    as_of: date | None
    source: str
    first_year: int | None = None
    last_year: int | None = None
    earliest_beyond: bool = False
    # Ordinals of every working day in the covered years, ascending: deadline arithmetic
    # becomes two binary searches instead of a walk over the days.
    _working_ordinals: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        listed = self.holidays | self.working_weekends
        first = self.first_year if self.first_year is not None else _min_year(listed)
        last = self.last_year if self.last_year is not None else _max_year(listed)
        if first is None or last is None:
            raise InvalidInput("a working calendar needs dates or an explicit year range")
        if first > last:
            raise InvalidInput(f"calendar year range {first}-{last} is empty")
        outside = sorted(day for day in listed if not first <= day.year <= last)
        if outside:
            raise InvalidInput(
                f"calendar date {outside[0].isoformat()} is outside its years {first}-{last}"
            )
        both = sorted(self.holidays & self.working_weekends)
        if both:
            raise InvalidInput(f"{both[0].isoformat()} is both a holiday and a working day")
        weekdays = sorted(day for day in self.working_weekends if day.weekday() < SATURDAY)
        if weekdays:
            raise InvalidInput(
                f"make-up working day {weekdays[0].isoformat()} is not a Saturday or Sunday"
            )
        object.__setattr__(self, "first_year", first)
        object.__setattr__(self, "last_year", last)
        start, end = date(first, 1, 1).toordinal(), date(last, 12, 31).toordinal()
        ordinals = tuple(
            ordinal for ordinal in range(start, end + 1) if self._rule(date.fromordinal(ordinal))
        )
        object.__setattr__(self, "_working_ordinals", ordinals)

    @property
    def years(self) -> range:
        """The years this calendar has holiday data for."""
        assert self.first_year is not None and self.last_year is not None
        return range(self.first_year, self.last_year + 1)

    def covers(self, day: date) -> bool:
        """Whether ``day`` falls in the covered years."""
        return day.year in self.years

    def is_working_day(self, day: date) -> bool:
        """A weekday that is not a holiday, or a listed make-up working day."""
        self._check(day)
        if day.year >= self.years.stop:
            return True  # earliest_beyond: every day past the data counts
        return self._rule(day)

    def add_working_days(self, day: date, n: int) -> date:
        """The ``n``-th working day after ``day`` (before it when ``n`` is negative)."""
        self._check(day)
        ordinals = self._working_ordinals
        if n == 0:
            return day
        if n > 0:
            # Working days up to and including ``day`` come before the answer.
            index = self._rank(day) + n - 1
        else:
            index = bisect_left(ordinals, day.toordinal()) + n
            if day.year >= self.years.stop:
                index = self._rank(day) + n - 1
        if index < 0 or (index >= len(ordinals) and not self.earliest_beyond):
            # The answer lies beyond the covered years: name the first uncovered day.
            beyond = date(self.years.stop, 1, 1) if n > 0 else date(self.years.start - 1, 12, 31)
            raise DateOutsideCalendar(beyond, self.years.start, self.years.stop - 1, self.as_of)
        if index >= len(ordinals):
            answer = self._first_day_beyond() + timedelta(days=index - len(ordinals))
            self._note_provisional(answer)
            return answer
        return date.fromordinal(ordinals[index])

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after ``start`` up to and including ``end`` (negative if end < start)."""
        self._check(start)
        self._check(end)
        return self._rank(end) - self._rank(start)

    def _rank(self, day: date) -> int:
        """Working days of the covered years up to and including ``day``, plus, past them
        (``earliest_beyond``), every day from the first uncovered one to ``day``."""
        ordinals = self._working_ordinals
        if day.year < self.years.stop:
            return bisect_right(ordinals, day.toordinal())
        self._note_provisional(day)
        return len(ordinals) + (day - self._first_day_beyond()).days + 1

    def _first_day_beyond(self) -> date:
        return date(self.years.stop, 1, 1)

    def _note_provisional(self, day: date) -> None:
        if day.year not in _PROVISIONAL_YEARS_LOGGED:
            _PROVISIONAL_YEARS_LOGGED.add(day.year)
            log.warning(
                "no holiday data for %d (%s covers %d-%d): its deadlines count every day as "
                "a working day, the earliest they can be; load the year's holiday schedule",
                day.year,
                self.source,
                self.years.start,
                self.years.stop - 1,
            )

    def _rule(self, day: date) -> bool:
        if day in self.working_weekends:
            return True
        return day.weekday() < SATURDAY and day not in self.holidays

    def _check(self, day: date) -> None:
        if self.covers(day) or (self.earliest_beyond and day.year >= self.years.stop):
            return
        raise DateOutsideCalendar(day, self.years.start, self.years.stop - 1, self.as_of)


def _min_year(days: frozenset[date]) -> int | None:
    return min(days).year if days else None


def _max_year(days: frozenset[date]) -> int | None:
    return max(days).year if days else None


__all__ = ["DateOutsideCalendar", "WorkingCalendar", "bank_day"]
