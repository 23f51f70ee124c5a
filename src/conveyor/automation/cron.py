"""A five-field cron expression (minute hour day month weekday, UTC) and its matching times.

Supports ``*``, lists (``1,15``), ranges (``1-5``), steps (``*/15``, ``0-30/10``,
``5/20``), month and weekday names (``JAN``, ``MON-FRI``), weekday 7 as Sunday, and
the aliases ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``. As in
Vixie cron, when both the day of the month and the weekday are restricted, a day
matching either one matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from conveyor.errors import ConfigError

__all__ = ["Cron", "parse_cron"]

_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# (name, low, high, names mapped to numbers)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    ("weekday", 0, 7, {d: i for i, d in enumerate(_DAYS)}),
)
# How far to look for the next match: leap days on a Monday come round within 28 years.
_HORIZON = timedelta(days=366 * 29)


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed cron expression; times are UTC and whole minutes."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_restricted: bool
    weekday_restricted: bool

    def matches(self, when: datetime) -> bool:
        """Whether the minute holding ``when`` (UTC) is one the expression names."""
        at = _utc(when)
        return (
            at.minute in self.minutes
            and at.hour in self.hours
            and at.month in self.months
            and self._day_matches(at)
        )

    def next_after(self, when: datetime) -> datetime:
        """The first matching minute strictly after ``when``.

        Raises:
            ConfigError: no time within 29 years matches (say, ``0 0 31 2 *``).
        """
        at = _utc(when).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = at + _HORIZON
        while at < limit:
            if at.month not in self.months:
                at = _first_of_next_month(at)
            elif not self._day_matches(at):
                at = (at + timedelta(days=1)).replace(hour=0, minute=0)
            elif at.hour not in self.hours:
                at = (at + timedelta(hours=1)).replace(minute=0)
            elif at.minute not in self.minutes:
                at += timedelta(minutes=1)
            else:
                return at
        raise ConfigError(f"schedule: {self.expression!r} matches no time")

    def latest_at_or_before(self, when: datetime, after: datetime) -> datetime | None:
        """The last matching minute in ``(after, when]``, or None when none is."""
        found = self.previous_at_or_before(when)
        return found if found is not None and found > _utc(after) else None

    def previous_at_or_before(self, when: datetime) -> datetime | None:
        """The last matching minute at or before ``when``, or None within 29 years."""
        at = _utc(when).replace(second=0, microsecond=0)
        limit = at - _HORIZON
        minute = timedelta(minutes=1)
        while at > limit:
            if at.month not in self.months:
                at = at.replace(day=1, hour=0, minute=0) - minute
            elif not self._day_matches(at):
                at = at.replace(hour=0, minute=0) - minute
            elif at.hour not in self.hours:
                at = at.replace(minute=0) - minute
            elif at.minute not in self.minutes:
                at -= minute
            else:
                return at
        return None

    def _day_matches(self, at: datetime) -> bool:
        day_ok = at.day in self.days
        weekday_ok = (at.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok


def parse_cron(expression: str, field: str = "schedule") -> Cron:
    """Parse a five-field cron expression.

    Args:
        expression: e.g. ``"0 2 * * *"`` (02:00 UTC every day) or ``"@hourly"``.
        field: the name the error messages give the expression.

    Raises:
        ConfigError: not five fields, or a part out of range or not a number (the
            message names the part and its allowed range).
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigError(
            f"{field}: must be a cron expression like '0 2 * * *', got {expression!r}"
        )
    text = _ALIASES.get(expression.strip().lower(), expression.strip())
    parts = text.split()
    if len(parts) != 5:
        raise ConfigError(
            f"{field}: {expression!r} must have 5 fields (minute hour day month weekday), "
            f"got {len(parts)}"
        )
    sets = [_parse_part(p, spec, field) for p, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
    return Cron(
        expression=expression.strip(),
        minutes=sets[0],
        hours=sets[1],
        days=sets[2],
        months=sets[3],
        weekdays=weekdays,
        day_restricted=not parts[2].startswith("*"),
        weekday_restricted=not parts[4].startswith("*"),
    )


def _parse_part(
    part: str, spec: tuple[str, int, int, dict[str, int]], field: str
) -> frozenset[int]:
    name, low, high, names = spec
    values: set[int] = set()
    for item in part.split(","):
        base, slash, step_text = item.partition("/")
        step = _number(step_text, field, name, {}) if slash else 1
        if step < 1:
            raise ConfigError(f"{field}: {name} step must be at least 1, got {item!r}")
        if base == "*":
            start, stop = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start, stop = _number(a, field, name, names), _number(b, field, name, names)
        else:
            start = _number(base, field, name, names)
            stop = high if slash else start
        if not (low <= start <= high and low <= stop <= high) or start > stop:
            raise ConfigError(
                f"{field}: {name} {item!r} is out of range; allowed {low}-{high}"
                + (f" or {', '.join(names)}" if names else "")
            )
        values.update(range(start, stop + 1, step))
    return frozenset(values)


def _number(text: str, field: str, name: str, names: dict[str, int]) -> int:
    key = text.strip().upper()
    if key in names:
        return names[key]
    if not key.isdigit():
        raise ConfigError(f"{field}: {name} {text!r} is not a number")
    return int(key)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _first_of_next_month(at: datetime) -> datetime:
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    return at.replace(year=year, month=month, day=1, hour=0, minute=0)
