"""The lifecycle's pure rules, and the README that documents them (the diagram and the event table)."""

import re
from pathlib import Path

import pytest

from service.lifecycle.events import STATUS_WORDS, WEBHOOK_TYPES, EventCode, WebhookType, render
from service.lifecycle.states import (
    CLOSED_STATUSES,
    MOVES,
    OPEN_STATUSES,
    IllegalMove,
    MissingRequirement,
    NotYetProcessed,
    StaffMove,
    Status,
    Via,
    allowed,
    check,
    check_requirements,
    ways_for,
)

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _diagram_edges() -> set[tuple[str, str]]:
    block = README.split("```mermaid", 1)[1].split("```", 1)[0]
    edges = set(re.findall(r"^\s*(\w+) --> (\w+)", block, flags=re.MULTILINE))
    return {edge for edge in edges if "[*]" not in edge}


def test_readme_state_diagram_draws_every_move_and_only_those():
    assert _diagram_edges() == {(str(start), str(to)) for start, to in MOVES}


def test_readme_event_table_lists_every_timeline_code_and_webhook_type():
    table = README.split("| timeline `code` |", 1)[1].split("\n\n", 1)[0]
    for code in EventCode:
        assert f"`{code}`" in table, code
    webhook_list = README.split("`GET /v1/webhooks/event-types`", 1)[1].split("\n", 1)[0]
    for type_ in WebhookType:
        assert type_.removeprefix("report") in webhook_list, type_
    assert set(WEBHOOK_TYPES) == set(WebhookType)


def test_every_status_is_open_or_closed_and_has_words():
    assert set(OPEN_STATUSES) | set(CLOSED_STATUSES) == set(Status)
    assert not set(OPEN_STATUSES) & set(CLOSED_STATUSES)
    assert set(STATUS_WORDS) == set(Status)


def test_an_officer_cannot_undo_a_closure_but_a_supervisor_can():
    with pytest.raises(IllegalMove) as refused:
        check("closed", "reopened", ways_for("officer"))
    assert refused.value.allowed == []
    check("closed", "reopened", ways_for("supervisor"))
    assert allowed("rejected", ways_for("admin")) == [Status.REOPENED]


def test_only_a_transfer_takes_a_worked_ticket_back_to_assigned():
    for worked in ("in_progress", "on_hold", "reopened"):
        with pytest.raises(IllegalMove):
            check(worked, "assigned", frozenset({Via.STAFF, Via.SUPERVISOR}))
        check(worked, "assigned", frozenset({Via.TRANSFER}))
    with pytest.raises(IllegalMove):
        check("resolved", "assigned", frozenset({Via.TRANSFER}))


def test_only_the_pipeline_takes_a_report_out_of_received_and_staff_may_only_reject_it_meanwhile():
    assert {to for (start, to), ways in MOVES.items() if start == Status.RECEIVED and Via.PIPELINE in ways} == {
        Status.ASSIGNED,
        Status.NEEDS_TRIAGE,
        Status.DUPLICATE,
    }
    check("received", "needs_triage", frozenset({Via.POISON}))  # processing kept failing: a dispatcher takes it
    for role in ("officer", "dispatcher", "supervisor", "admin"):
        assert allowed("received", ways_for(role)) == [Status.REJECTED]
    for ways in (ways_for("admin"), frozenset({Via.TRIAGE}), frozenset({Via.TRANSFER})):
        for to in ("assigned", "needs_triage", "duplicate", "in_progress"):
            with pytest.raises(NotYetProcessed):  # refused for now, not for good: it says so
                check("received", to, ways)
    with pytest.raises(IllegalMove) as refused:  # once processed, a refusal is an ordinary one
        check("needs_triage", "in_progress", ways_for("officer"))
    assert not isinstance(refused.value, NotYetProcessed)


def test_the_citizen_may_only_answer_and_reopen():
    citizen = frozenset({Via.CITIZEN})
    assert {(start, to) for (start, to), ways in MOVES.items() if Via.CITIZEN in ways} == {
        (Status.ON_HOLD, Status.IN_PROGRESS),
        (Status.RESOLVED, Status.REOPENED),
    }
    with pytest.raises(IllegalMove):
        check("assigned", "resolved", citizen)


def test_moves_that_tell_the_citizen_something_need_the_words():
    with pytest.raises(MissingRequirement) as missing:
        check_requirements(StaffMove(to=Status.RESOLVED, public_reply="  "))
    assert missing.value.field == "public_reply"
    check_requirements(StaffMove(to=Status.ON_HOLD, question="Số nhà?"))


def test_messages_follow_the_language_and_keep_what_a_person_wrote():
    change = {"status": {"from": "assigned", "to": "rejected"}}
    assert render("status_changed", change, "Ngoài phạm vi", vietnamese=True) == "Không thụ lý: Ngoài phạm vi"
    assert render("status_changed", change, None, vietnamese=False) == "Rejected"
    assert render("public_reply", {}, "Đã sửa xong", vietnamese=False) == "Đã sửa xong"
    assert render("received", {}, "Đã tiếp nhận phản ánh / Report received", vietnamese=False) == "Report received"
