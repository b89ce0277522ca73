"""The organiser reports' formatting and ranges, without servers: CSV cells a spreadsheet
cannot run, money in units, whole buckets and a bounded series."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone

import pytest

from http_shell.problems import ProblemError
from projections.attendee_csv import csv_chunk, money, neutralised, seats_cell
from read_api.reports import (
    MAX_POINTS,
    sales_window,
)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+1-555", "'+1-555"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("\ncmd", "'\ncmd"),
        ("Ana = Bob", "Ana = Bob"),
        ("", ""),
        (None, ""),
    ],
)
def test_a_cell_a_spreadsheet_would_run_is_prefixed_with_a_quote(text, shown):
    assert neutralised(text) == shown


def test_commas_quotes_and_line_breaks_survive_a_round_trip_through_csv():
    rows = [["id", 'Smith, "Jo"\nthe second', "'=1+1", "GA:2"]]
    parsed = list(csv.reader(io.StringIO(csv_chunk(rows).decode("utf-8"), newline="")))
    assert parsed == rows


def test_money_is_in_units_with_two_decimals():
    assert [money(c) for c in (0, 5, 4500, 123456, -250)] == [
        "0.00",
        "0.05",
        "45.00",
        "1234.56",
        "-2.50",
    ]


def test_seats_then_general_admission_per_section():
    assert seats_cell(["A-1-3", "A-1-4"], {"GA": 2}) == "A-1-3 A-1-4 GA:2"
    assert seats_cell([], {"PIT": 1, "GA": 3}) == "GA:3 PIT:1"


T = datetime(2027, 3, 1, 20, 17, 42, tzinfo=UTC)


def test_the_default_range_is_whole_buckets_around_the_first_and_last_movement():
    window = sales_window("hour", None, None, (T, T + timedelta(hours=2)))
    assert window is not None
    assert window.start == datetime(2027, 3, 1, 20, tzinfo=UTC)
    assert window.points == 3  # 20:00, 21:00, 22:00
    one = sales_window("minute", None, None, (T, T))
    assert one is not None and (one.start, one.points) == (T.replace(second=0), 1)


def test_a_range_in_another_zone_is_bucketed_in_utc():
    paris = timezone(timedelta(hours=1))
    later = T + timedelta(days=1)
    window = sales_window("day", datetime(2027, 3, 2, 0, 30, tzinfo=paris), None, (T, later))
    assert window is not None
    assert (window.start, window.points) == (datetime(2027, 3, 1, tzinfo=UTC), 2)


def test_nothing_sold_and_no_range_is_an_empty_series():
    assert sales_window("day", None, None, None) is None


def test_a_reversed_or_too_long_range_is_refused():
    with pytest.raises(ProblemError) as reversed_range:
        sales_window("hour", T, T, None)
    assert (reversed_range.value.status, reversed_range.value.kind) == (422, "invalid-range")
    with pytest.raises(ProblemError) as too_long:
        sales_window("minute", T, T + timedelta(minutes=MAX_POINTS + 1), None)
    assert (too_long.value.status, too_long.value.kind) == (422, "range-too-large")
    assert sales_window("minute", T, T + timedelta(minutes=MAX_POINTS - 1), None) is not None


def test_a_range_at_the_end_of_time_is_refused_not_crashed():
    end_of_time = datetime.max.replace(tzinfo=UTC)
    with pytest.raises(ProblemError) as out_of_range:
        sales_window("day", end_of_time - timedelta(hours=1), end_of_time, None)
    assert out_of_range.value.status == 422
