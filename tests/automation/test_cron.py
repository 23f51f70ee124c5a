"""The five-field cron matcher: parsing, matching, the next and latest matching minutes."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from conveyor.automation.cron import parse_cron
from conveyor.errors import ConfigError


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_a_daily_expression_matches_its_minute_only():
    cron = parse_cron("0 2 * * *")
    assert cron.matches(at(2026, 3, 1, 2, 0))
    assert cron.matches(at(2026, 3, 1, 2, 0).replace(second=59))
    assert not cron.matches(at(2026, 3, 1, 2, 1))
    assert not cron.matches(at(2026, 3, 1, 3, 0))


def test_next_after_is_strictly_after_and_skips_to_the_next_day():
    cron = parse_cron("0 2 * * *")
    assert cron.next_after(at(2026, 3, 1, 2, 0)) == at(2026, 3, 2, 2, 0)
    assert cron.next_after(at(2026, 3, 1, 1, 59, 30)) == at(2026, 3, 1, 2, 0)
    assert cron.next_after(at(2026, 12, 31, 3, 0)) == at(2027, 1, 1, 2, 0)


def test_ranges_steps_lists_and_names():
    cron = parse_cron("*/15 9-17 * * MON-FRI")
    assert cron.minutes == frozenset({0, 15, 30, 45})
    assert cron.hours == frozenset(range(9, 18))
    # Friday 2026-03-06 17:50 -> Monday 09:00
    assert cron.next_after(at(2026, 3, 6, 17, 50)) == at(2026, 3, 9, 9, 0)
    assert parse_cron("5,10 0-20/10 * JAN,dec *").months == frozenset({1, 12})
    assert parse_cron("5/20 * * * *").minutes == frozenset({5, 25, 45})
    assert parse_cron("0 0 * * 7").weekdays == frozenset({0})  # 7 is Sunday


def test_day_of_month_or_weekday_when_both_are_restricted():
    cron = parse_cron("0 0 13 * FRI")  # the 13th, or any Friday (Vixie cron)
    assert cron.matches(at(2026, 3, 13))  # a Friday the 13th
    assert cron.matches(at(2026, 3, 6))  # a Friday
    assert cron.matches(at(2026, 4, 13))  # a Monday the 13th
    assert not cron.matches(at(2026, 3, 7))


def test_aliases_and_a_time_zone_aware_input():
    assert parse_cron("@hourly").next_after(at(2026, 1, 1, 5, 30)) == at(2026, 1, 1, 6, 0)
    assert parse_cron("@monthly").next_after(at(2026, 1, 15)) == at(2026, 2, 1)
    paris = timezone(timedelta(hours=1))
    # 02:30 in UTC+1 is 01:30 UTC: the 02:00 UTC slot is still ahead
    assert parse_cron("0 2 * * *").next_after(datetime(2026, 1, 1, 2, 30, tzinfo=paris)) == at(
        2026, 1, 1, 2, 0
    )


def test_leap_day_is_found_years_ahead():
    assert parse_cron("0 0 29 2 *").next_after(at(2026, 1, 1)) == at(2028, 2, 29)


def test_latest_at_or_before_collapses_missed_slots_to_the_last():
    cron = parse_cron("0 2 * * *")
    assert cron.latest_at_or_before(at(2026, 3, 5, 1, 0), at(2026, 3, 1, 2, 0)) == at(
        2026, 3, 4, 2, 0
    )
    assert cron.latest_at_or_before(at(2026, 3, 1, 3, 0), at(2026, 3, 1, 2, 0)) is None
    assert cron.latest_at_or_before(at(2026, 3, 1, 2, 0), at(2026, 3, 1, 1, 59)) == at(
        2026, 3, 1, 2, 0
    )
    monthly = parse_cron("0 0 1 * *")
    assert monthly.latest_at_or_before(at(2026, 6, 15), at(2026, 1, 1)) == at(2026, 6, 1)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 2 * *", "must have 5 fields"),
        ("60 * * * *", "minute '60' is out of range; allowed 0-59"),
        ("* 24 * * *", "hour '24' is out of range"),
        ("* * 0 * *", "day of month '0' is out of range"),
        ("* * * FOO *", "month 'FOO' is not a number"),
        ("*/0 * * * *", "minute step must be at least 1"),
        ("5-1 * * * *", "minute '5-1' is out of range"),
        ("", "must be a cron expression"),
    ],
)
def test_bad_expressions_name_the_part_and_the_rule(expression, words):
    with pytest.raises(ConfigError, match=r"triggers\[0\]\.schedule") as info:
        parse_cron(expression, "triggers[0].schedule")
    assert words in str(info.value)


def test_an_expression_that_never_matches_says_so():
    with pytest.raises(ConfigError, match="matches no time"):
        parse_cron("0 0 31 2 *").next_after(at(2026, 1, 1))
