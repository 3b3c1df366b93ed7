"""The SLA calendar and policies, asserted in Ho Chi Minh City local time."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.sla import (
    DEFAULT_POLICIES,
    SlaPolicy,
    WorkingCalendar,
    compute_deadlines,
    extend_for_pause,
    policy_from_dict,
    sla_state,
)

HCMC = ZoneInfo("Asia/Ho_Chi_Minh")
CALENDAR = WorkingCalendar()
NORMAL = DEFAULT_POLICIES["normal"]
URGENT = DEFAULT_POLICIES["urgent"]


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A local HCMC wall time as the aware UTC datetime the service stores."""
    return datetime(year, month, day, hour, minute, second, tzinfo=HCMC).astimezone(UTC)


def local(moment: datetime) -> datetime:
    assert moment.utcoffset() == timedelta(0), "the service returns UTC"
    return moment.astimezone(HCMC).replace(tzinfo=None)


# --- the working day --------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "working"),
    [
        (at(2027, 3, 1, 7, 29), False),  # Monday before opening
        (at(2027, 3, 1, 7, 30), True),
        (at(2027, 3, 1, 11, 29), True),
        (at(2027, 3, 1, 11, 30), False),  # lunch break
        (at(2027, 3, 1, 12, 45), False),
        (at(2027, 3, 1, 13, 0), True),
        (at(2027, 3, 1, 17, 0), False),  # closed
        (at(2027, 3, 6, 9, 0), False),  # Saturday
        (at(2027, 3, 7, 9, 0), False),  # Sunday
    ],
)
def test_working_time_is_office_hours_on_weekdays(moment, working):
    assert CALENDAR.is_working_time(moment) is working


def test_working_day_is_eight_hours_by_default():
    assert CALENDAR.working_hours_per_day == 8


def test_report_filed_friday_afternoon_is_due_monday_afternoon():
    # Friday 16:00-17:00 is one hour, Monday gives the other seven: 4 before lunch, 3 after.
    due = CALENDAR.add_working_hours(at(2027, 3, 5, 16, 0), 8)
    assert local(due) == datetime(2027, 3, 8, 16, 0)


def test_deadline_skips_the_lunch_break():
    due = CALENDAR.add_working_hours(at(2027, 3, 1, 10, 30), 2)
    assert local(due) == datetime(2027, 3, 1, 14, 0)


def test_report_filed_during_lunch_starts_counting_at_13_00():
    due = CALENDAR.add_working_hours(at(2027, 3, 1, 12, 10), 1)
    assert local(due) == datetime(2027, 3, 1, 14, 0)


def test_report_filed_at_night_starts_counting_next_morning():
    due = CALENDAR.add_working_hours(at(2027, 3, 1, 22, 15), 1)
    assert local(due) == datetime(2027, 3, 2, 8, 30)


def test_report_filed_on_sunday_is_due_monday_evening():
    due = CALENDAR.add_working_hours(at(2027, 3, 7, 10, 0), 8)
    assert local(due) == datetime(2027, 3, 8, 17, 0)


def test_deadline_that_uses_up_friday_lands_at_friday_close_not_monday():
    due = CALENDAR.add_working_hours(at(2027, 3, 5, 16, 0), 1)
    assert local(due) == datetime(2027, 3, 5, 17, 0)


def test_zero_hours_from_outside_working_time_is_the_next_working_moment():
    assert local(CALENDAR.next_working_moment(at(2027, 3, 6, 9, 0))) == datetime(2027, 3, 8, 7, 30)


def test_input_in_any_timezone_gives_utc_out():
    friday_4pm_local = datetime(2027, 3, 5, 9, 0, tzinfo=UTC)  # 16:00 in HCMC
    due = CALENDAR.add_working_hours(friday_4pm_local, 8)
    assert due.tzinfo == UTC and local(due) == datetime(2027, 3, 8, 16, 0)


def test_working_hours_between_counts_only_office_hours():
    assert CALENDAR.working_hours_between(at(2027, 3, 5, 16, 0), at(2027, 3, 8, 9, 30)) == 3
    assert CALENDAR.working_hours_between(at(2027, 3, 1, 11, 0), at(2027, 3, 1, 13, 30)) == 1
    assert CALENDAR.working_hours_between(at(2027, 3, 8, 9, 30), at(2027, 3, 5, 16, 0)) == -3


@pytest.mark.parametrize("hours", [0.25, 1, 3.5, 8, 40, 80, 123.75])
def test_adding_then_measuring_gives_the_same_hours(hours):
    start = at(2027, 1, 28, 15, 20)  # the Tết break lies ahead
    due = CALENDAR.add_working_hours(start, hours)
    assert CALENDAR.working_hours_between(start, due) == pytest.approx(hours)


# --- public holidays from the `holidays` package ----------------------------------


def test_tet_2027_break_is_thursday_4_to_wednesday_10_february():
    # Tết Đinh Mùi is Saturday 6/2/2027: eve + mùng 1-4, weekend days moved to 4/2 and 10/2.
    break_days = [date(2027, 2, 4) + timedelta(days=n) for n in range(7)]
    assert not any(CALENDAR.is_working_day(day) for day in break_days)
    assert CALENDAR.is_working_day(date(2027, 2, 3))
    assert CALENDAR.is_working_day(date(2027, 2, 11))


def test_tet_pushes_a_deadline_past_the_whole_break():
    due = CALENDAR.add_working_hours(at(2027, 2, 3, 16, 0), 8)
    assert local(due) == datetime(2027, 2, 11, 16, 0)


def test_five_working_days_across_tet_take_five_more_calendar_days():
    _, resolve_due = compute_deadlines(NORMAL, CALENDAR, at(2027, 2, 3, 8, 0))
    # Without Tết: Wednesday 10/2 08:00. The break costs its five weekdays.
    assert local(resolve_due) == datetime(2027, 2, 17, 8, 0)


def test_reunification_and_labour_day_2027_with_the_saturday_moved_to_monday():
    # 30/4 is a Friday, 1/5 a Saturday observed on Monday 3/5.
    due = CALENDAR.add_working_hours(at(2027, 4, 29, 16, 0), 8)
    assert local(due) == datetime(2027, 5, 4, 16, 0)


def test_national_day_2027_takes_2_and_3_september():
    assert not CALENDAR.is_working_day(date(2027, 9, 2))
    assert not CALENDAR.is_working_day(date(2027, 9, 3))
    due = CALENDAR.add_working_hours(at(2027, 9, 1, 16, 0), 8)
    assert local(due) == datetime(2027, 9, 6, 16, 0)


def test_national_day_2026_swap_known_to_the_library():
    # 31/8/2026 was swapped with Saturday 22/8, which is therefore worked.
    assert CALENDAR.is_working_day(date(2026, 8, 22))
    due = CALENDAR.add_working_hours(at(2026, 8, 28, 16, 0), 8)
    assert local(due) == datetime(2026, 9, 3, 16, 0)


def test_calendar_without_holiday_country_ignores_public_holidays():
    assert WorkingCalendar(holiday_country=None).is_working_day(date(2027, 4, 30))


# --- configured exceptions ---------------------------------------------------------


def test_extra_holidays_from_config_extend_tet():
    # As loaded from YAML: quoted ISO dates arrive as strings.
    calendar = WorkingCalendar(extra_holidays=["2027-02-11", date(2027, 2, 12)])
    due = calendar.add_working_hours(at(2027, 2, 3, 16, 0), 8)
    assert local(due) == datetime(2027, 2, 15, 16, 0)


def test_make_up_saturday_from_config_is_a_working_day():
    calendar = WorkingCalendar(extra_working_dates=[date(2027, 2, 20)])
    due = calendar.add_working_hours(at(2027, 2, 19, 16, 0), 8)
    assert local(due) == datetime(2027, 2, 20, 16, 0)


def test_configured_working_periods_and_weekdays():
    calendar = WorkingCalendar(working_weekdays=[0, 1, 2, 3, 4, 5], working_periods=[("08:00", "12:00")])
    assert calendar.working_hours_per_day == 4
    due = calendar.add_working_hours(at(2027, 3, 5, 11, 0), 2)
    assert local(due) == datetime(2027, 3, 6, 9, 0)


@pytest.mark.parametrize(
    "settings",
    [
        {"extra_holidays": [date(2027, 2, 20)], "extra_working_dates": [date(2027, 2, 20)]},
        {"working_periods": [("13:00", "17:00"), ("07:30", "13:30")]},
        {"working_periods": [("12:00", "08:00")]},
        {"working_weekdays": [7]},
    ],
)
def test_inconsistent_calendar_settings_are_refused(settings):
    with pytest.raises(ValueError):
        WorkingCalendar(**settings)


def test_calendar_with_no_working_day_fails_instead_of_looping():
    with pytest.raises(ValueError):
        WorkingCalendar(working_weekdays=[]).add_working_hours(at(2027, 3, 1), 1)


def test_naive_datetimes_and_negative_hours_are_refused():
    with pytest.raises(ValueError):
        CALENDAR.add_working_hours(datetime(2027, 3, 1, 9, 0), 1)
    with pytest.raises(ValueError):
        CALENDAR.add_working_hours(at(2027, 3, 1, 9, 0), -1)


# --- policies and deadlines --------------------------------------------------------


def test_normal_report_is_acknowledged_in_a_working_day_and_resolved_in_five():
    acknowledge_due, resolve_due = compute_deadlines(NORMAL, CALENDAR, at(2027, 3, 1, 8, 0))
    assert local(acknowledge_due) == datetime(2027, 3, 2, 8, 0)
    assert local(resolve_due) == datetime(2027, 3, 8, 8, 0)


def test_low_priority_report_gets_ten_working_days():
    _, resolve_due = compute_deadlines(DEFAULT_POLICIES["low"], CALENDAR, at(2027, 3, 1, 8, 0))
    assert local(resolve_due) == datetime(2027, 3, 15, 8, 0)


def test_urgent_deadlines_run_on_the_clock_through_saturday_night():
    acknowledge_due, resolve_due = compute_deadlines(URGENT, CALENDAR, at(2027, 3, 6, 22, 0))
    assert local(acknowledge_due) == datetime(2027, 3, 6, 23, 0)
    assert local(resolve_due) == datetime(2027, 3, 7, 2, 0)


def test_urgent_deadlines_ignore_tet():
    _, resolve_due = compute_deadlines(URGENT, CALENDAR, at(2027, 2, 6, 10, 0))
    assert local(resolve_due) == datetime(2027, 2, 6, 14, 0)


def test_pause_while_on_hold_moves_the_deadline_by_the_working_time_paused():
    _, resolve_due = compute_deadlines(NORMAL, CALENDAR, at(2027, 3, 1, 8, 0))  # Mon 8/3 08:00
    # On hold Tuesday 10:00-14:00: 1.5 h before lunch + 1 h after.
    extended = extend_for_pause(NORMAL, CALENDAR, resolve_due, at(2027, 3, 2, 10, 0), at(2027, 3, 2, 14, 0))
    assert local(extended) == datetime(2027, 3, 8, 10, 30)


def test_pause_over_a_weekend_extends_only_by_working_time():
    _, resolve_due = compute_deadlines(NORMAL, CALENDAR, at(2027, 3, 3, 8, 0))  # Wed 10/3 08:00
    # On hold Friday 16:00 to Monday 09:30: three working hours, not three days.
    extended = extend_for_pause(NORMAL, CALENDAR, resolve_due, at(2027, 3, 5, 16, 0), at(2027, 3, 8, 9, 30))
    assert local(extended) == datetime(2027, 3, 10, 11, 0)


def test_pause_on_an_urgent_ticket_extends_by_clock_time():
    due = at(2027, 3, 6, 2, 0)
    extended = extend_for_pause(URGENT, CALENDAR, due, at(2027, 3, 5, 23, 0), at(2027, 3, 6, 0, 30))
    assert local(extended) == datetime(2027, 3, 6, 3, 30)


def test_pause_outside_working_time_leaves_a_deadline_at_closing_time_alone():
    due = at(2027, 3, 5, 17, 0)
    extended = extend_for_pause(NORMAL, CALENDAR, due, at(2027, 3, 6, 9, 0), at(2027, 3, 7, 9, 0))
    assert local(extended) == datetime(2027, 3, 5, 17, 0)


def test_resume_before_pause_is_refused():
    with pytest.raises(ValueError):
        extend_for_pause(NORMAL, CALENDAR, at(2027, 3, 8), at(2027, 3, 2, 14, 0), at(2027, 3, 2, 10, 0))


# --- sla_state ---------------------------------------------------------------------

ACKNOWLEDGE_ONLY = SlaPolicy(acknowledge_hours=8, resolve_hours=8, clock="working")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(2027, 3, 1, 7, 30), "on_track"),
        (at(2027, 3, 1, 14, 55, 12), "on_track"),  # 74 % of 8 working hours = 5.92 h
        (at(2027, 3, 1, 15, 0), "at_risk"),  # 75 %
        (at(2027, 3, 1, 16, 59), "at_risk"),
        (at(2027, 3, 1, 17, 0), "overdue"),  # 100 %
        (at(2027, 3, 2, 9, 0), "overdue"),
    ],
)
def test_sla_state_measures_elapsed_working_time(now, expected):
    started_at = at(2027, 3, 1, 7, 30)
    _, due_at = compute_deadlines(ACKNOWLEDGE_ONLY, CALENDAR, started_at)  # Monday 17:00
    assert sla_state(now, started_at, due_at, policy=ACKNOWLEDGE_ONLY, calendar=CALENDAR) == expected


def test_sla_state_waits_through_the_weekend_for_a_working_policy():
    started_at = at(2027, 3, 5, 16, 0)
    _, due_at = compute_deadlines(ACKNOWLEDGE_ONLY, CALENDAR, started_at)  # Monday 16:00
    # Sunday noon: one working hour of eight has passed.
    assert sla_state(at(2027, 3, 7, 12, 0), started_at, due_at, policy=ACKNOWLEDGE_ONLY, calendar=CALENDAR) == (
        "on_track"
    )


@pytest.mark.parametrize(("minutes", "expected"), [(177.6, "on_track"), (180, "at_risk"), (240, "overdue")])
def test_sla_state_on_the_clock_for_urgent_tickets(minutes, expected):
    started_at = at(2027, 3, 6, 22, 0)
    _, due_at = compute_deadlines(URGENT, CALENDAR, started_at)
    now = started_at + timedelta(minutes=minutes)  # 74 %, 75 %, 100 % of four hours
    assert sla_state(now, started_at, due_at, policy=URGENT, calendar=CALENDAR) == expected


def test_sla_state_leaves_paused_time_out():
    started_at = at(2027, 3, 1, 7, 30)
    due_at = extend_for_pause(
        ACKNOWLEDGE_ONLY, CALENDAR, at(2027, 3, 1, 17, 0), at(2027, 3, 1, 8, 30), at(2027, 3, 1, 10, 30)
    )  # two working hours on hold: due Tuesday 09:30
    kwargs = {"policy": ACKNOWLEDGE_ONLY, "calendar": CALENDAR, "paused_seconds": 2 * 3600}
    # 16:30: 7.5 working hours since start, 5.5 of them counting, of 8 allowed: 69 %
    # (counting the pause would give 7.5 / 10 = 75 %).
    assert sla_state(at(2027, 3, 1, 16, 30), started_at, due_at, **kwargs) == "on_track"
    assert sla_state(at(2027, 3, 1, 17, 0), started_at, due_at, **kwargs) == "at_risk"


def test_sla_state_custom_at_risk_ratio():
    started_at = at(2027, 3, 1, 7, 30)
    due_at = at(2027, 3, 1, 17, 0)
    now = at(2027, 3, 1, 11, 30)  # 50 %
    kwargs = {"policy": ACKNOWLEDGE_ONLY, "calendar": CALENDAR}
    assert sla_state(now, started_at, due_at, at_risk_ratio=0.5, **kwargs) == "at_risk"
    assert sla_state(now, started_at, due_at, at_risk_ratio=0.6, **kwargs) == "on_track"


# --- catalogue policies ------------------------------------------------------------


def test_default_policies_follow_1022_rules():
    assert NORMAL == SlaPolicy(acknowledge_hours=8, resolve_hours=40, clock="working")
    assert DEFAULT_POLICIES["low"].resolve_hours == DEFAULT_POLICIES["complex"].resolve_hours == 80
    assert URGENT == SlaPolicy(acknowledge_hours=1, resolve_hours=4, clock="clock")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"acknowledge_hours": 8, "resolve_days": 5, "clock": "working"}, SlaPolicy(8, 40, "working")),
        ({"acknowledge_hours": 8, "resolve_hours": 12}, SlaPolicy(8, 12, "working")),
        ({"acknowledge_days": 1, "resolve_days": 10}, SlaPolicy(8, 80, "working")),
        ({"acknowledge_hours": 1, "resolve_days": 1, "clock": "clock"}, SlaPolicy(1, 24, "clock")),
    ],
)
def test_policy_from_catalogue_entry(entry, expected):
    assert policy_from_dict(entry) == expected


def test_policy_days_use_the_calendars_working_day_length():
    policy = policy_from_dict({"acknowledge_hours": 4, "resolve_days": 5}, working_hours_per_day=4)
    assert policy.resolve_hours == 20


@pytest.mark.parametrize(
    "entry",
    [
        {"acknowledge_hours": 8, "resolve_days": 5, "resolve_hours": 40},  # both
        {"acknowledge_hours": 8},  # no resolve
        {"acknowledge_hours": 8, "resolve_day": 5},  # typo
        {"acknowledge_hours": 8, "resolve_days": 5, "clock": "calendar"},
        {"acknowledge_hours": -1, "resolve_days": 5},
    ],
)
def test_bad_catalogue_entries_are_refused(entry):
    with pytest.raises(ValueError):
        policy_from_dict(entry)
