"""A report's life through the one door: every path checked, evented once, and heard by the right receivers."""

import pytest

from service.auth import api_keys
from tests.conftest import in_app, run_worker
from tests.factories import report_body
from tests.test_tickets import file_report, make_user, move
from tests.test_webhooks import Receiver, subscribe

UNSURE = "asdf qwer zxcv lorem ipsum dolor"


@pytest.fixture
def receiver(settings, monkeypatch):
    monkeypatch.setattr(settings, "webhook_allowed_hosts", ["127.0.0.1"])
    server = Receiver()
    yield server
    server.close()


def deliver(client) -> None:
    client.portal.call(client.app.state.handoff.drain)
    run_worker(client)


def key(client, role, department=None) -> str:
    return in_app(client, lambda s: api_keys.create(s, name=role, role=role, department_code=department)).key


def statuses_heard(receiver, tracking_code) -> list[tuple[str, str | None, str]]:
    return [
        (r.payload["type"], r.payload["data"].get("previous_status"), r.payload["data"]["status"])
        for r in receiver.requests
        if r.payload["data"]["tracking_code"] == tracking_code and r.payload["type"] == "report.status_changed"
    ]


def timeline(client, headers, ticket, language="vi") -> list[dict]:
    return client.get(f"/v1/tickets/{ticket}", headers={**headers, "Accept-Language": language}).json()["timeline"]


def test_citizen_answer_moves_on_hold_to_in_progress_and_says_so(client, api_key, receiver):
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    subscribe(client, key(client, "admin"), receiver.url, event_types=["report.status_changed"])
    created = file_report(client, api_key)
    assert move(client, officer, created["id"], to="on_hold", question="Cột đèn số mấy?").status_code == 200
    answered = client.post(
        f"/v1/reports/{created['tracking_code']}/replies",
        json={"message": "Cột số 12"},
        headers={"X-Citizen-Token": created["citizen_token"]},
    )
    assert answered.status_code == 200 and answered.json()["status"] == "in_progress"
    deliver(client)

    assert statuses_heard(receiver, created["tracking_code"]) == [
        ("report.status_changed", "received", "assigned"),
        ("report.status_changed", "assigned", "on_hold"),
        ("report.status_changed", "on_hold", "in_progress"),
    ]
    last = timeline(client, officer, created["id"])[-1]
    assert (last["code"], last["data"]["status"], last["actor"]) == (
        "status_changed",
        {"from": "on_hold", "to": "in_progress"},
        "citizen",
    )


def test_transfer_restarts_the_ticket_at_the_new_department_which_hears_assigned(client, api_key, receiver):
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    ward = key(client, "department_system", "ubnd-phuong-ben-thanh")
    subscribe(client, ward, receiver.url)
    created = file_report(client, api_key)
    assert move(client, officer, created["id"], to="in_progress").status_code == 200
    moved = client.post(
        f"/v1/tickets/{created['id']}/transfer",
        json={"department_code": "ubnd-phuong-ben-thanh", "reason": "Đèn trong hẻm do phường quản lý"},
        headers=officer,
    )
    assert moved.status_code == 200
    assert (moved.json()["status"], moved.json()["department_code"]) == ("assigned", "ubnd-phuong-ben-thanh")
    deliver(client)

    # The ward heard nothing while the ticket was the lighting company's; then the transfer, all of it.
    assert receiver.types() == ["report.status_changed", "report.transferred", "report.assigned"]
    changed, transferred, assigned = (r.payload["data"] for r in receiver.requests)
    assert (changed["previous_status"], changed["status"]) == ("in_progress", "assigned")
    assert (transferred["from_department"], transferred["to_department"]) == ("chieu-sang", "ubnd-phuong-ben-thanh")
    assert assigned["department"]["code"] == "ubnd-phuong-ben-thanh"
    event = timeline(client, make_user(client, "sup", "admin"), created["id"], "en")[-1]
    assert event["code"] == "transferred"
    assert event["data"]["status"] == {"from": "in_progress", "to": "assigned"}
    assert event["data"]["department_code"] == {"from": "chieu-sang", "to": "ubnd-phuong-ben-thanh"}
    assert event["message"].startswith("Transferred to")


def test_triaged_and_auto_routed_reports_emit_the_same_events(client, api_key, receiver):
    dispatcher = make_user(client, "dispatch", "dispatcher")
    subscribe(client, key(client, "admin"), receiver.url)
    routed = file_report(
        client, api_key, service_code=None, description="Đèn đường trước chợ Bến Thành bị tắt ba đêm nay"
    )
    unsure = client.post(
        "/v1/reports", json=report_body(description=UNSURE, lat=10.78), headers={"X-API-Key": api_key}
    ).json()
    run_worker(client)
    triaged = client.post(
        f"/v1/tickets/{unsure['id']}/triage", json={"service_code": "street_lighting"}, headers=dispatcher
    )
    assert triaged.status_code == 200
    deliver(client)

    def heard(created):
        return [
            r.payload["type"]
            for r in receiver.requests
            if r.payload["data"]["tracking_code"] == created["tracking_code"]
        ]

    assert heard(routed) == ["report.created", "report.classified", "report.status_changed", "report.assigned"]
    # The unsure one first went to the dispatchers (a status change, nothing classified), then the same as above.
    assert heard(unsure) == [
        "report.created",
        "report.status_changed",
        "report.classified",
        "report.status_changed",
        "report.assigned",
    ]


def test_duplicate_reporters_hear_when_their_original_changes_status(client, api_key, receiver):
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    second_app = key(client, "citizen_app")
    subscribe(client, second_app, receiver.url)  # the app the duplicate came from
    original = file_report(client, api_key)
    duplicate = client.post(
        "/v1/reports",
        json=report_body(description="Đèn đường chợ Bến Thành tắt mấy đêm rồi", service_code="street_lighting"),
        headers={"X-API-Key": second_app},
    ).json()
    run_worker(client)
    assert client.get(f"/v1/reports/{duplicate['tracking_code']}").json()["status"] == "duplicate"
    assert move(client, officer, original["id"], to="in_progress").status_code == 200
    deliver(client)

    heard = [r.payload for r in receiver.requests if r.payload["type"] == "report.original_status_changed"]
    assert len(heard) == 1
    assert heard[0]["data"]["tracking_code"] == duplicate["tracking_code"]
    assert heard[0]["data"]["original"] == {
        "tracking_code": original["tracking_code"],
        "status": "in_progress",
        "previous_status": "assigned",
    }
    page = client.get(f"/v1/reports/{duplicate['tracking_code']}", headers={"Accept-Language": "en"}).json()
    assert page["original"]["status"] == "in_progress"
    assert page["timeline"][-1]["code"] == "original_status_changed"
    assert page["timeline"][-1]["message"] == f"Original report {original['tracking_code']}: In progress"


def test_timeline_codes_and_messages_follow_accept_language(client, api_key):
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    created = file_report(client, api_key)
    move(client, officer, created["id"], to="rejected", reason="Ngoài phạm vi")
    page_vi = client.get(f"/v1/reports/{created['tracking_code']}").json()["timeline"]
    page_en = client.get(
        f"/v1/reports/{created['tracking_code']}", headers={"Accept-Language": "en-US,en;q=0.9"}
    ).json()["timeline"]
    assert [entry["code"] for entry in page_vi] == ["received", "status_changed", "status_changed"]
    assert [entry["message"] for entry in page_vi] == [
        "Đã tiếp nhận phản ánh",
        "Đã chuyển đơn vị xử lý",
        "Không thụ lý: Ngoài phạm vi",
    ]
    assert [entry["message"] for entry in page_en] == [
        "Report received",
        "Assigned to a department",
        "Rejected: Ngoài phạm vi",
    ]
    assert (page_en[-1]["previous_status"], page_en[-1]["status"]) == ("assigned", "rejected")
    assert timeline(client, officer, created["id"], "en")[-1]["message"] == "Rejected: Ngoài phạm vi"


def test_ticket_etag_changes_on_every_change_and_a_stale_if_match_is_412(client, api_key):
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    dispatcher = make_user(client, "dispatch", "dispatcher")
    created = file_report(client, api_key)
    ticket = f"/v1/tickets/{created['id']}"
    first = client.get(ticket, headers=officer)
    etag = first.headers["ETag"]
    assert etag == first.json()["etag"]
    listed = client.get("/v1/tickets", headers=officer).json()["items"]
    assert listed[0]["etag"] == etag
    assert client.get(ticket, headers=officer).headers["ETag"] == etag  # reading changes nothing

    writes = [
        ("post", "/comments", {"body": "Đã ghi nhận", "visibility": "internal"}, officer),
        ("post", "/transitions", {"to": "in_progress"}, officer),
        ("post", "/assignee", {"assignee_username": "officer.lighting"}, dispatcher),
        ("post", "/transfer", {"department_code": "ubnd-phuong-ben-thanh", "reason": "Phường quản lý"}, officer),
    ]
    seen = {etag}
    for _method, path, body, headers in writes:
        stale = client.post(ticket + path, json=body, headers={**headers, "If-Match": '"0-0"'})
        assert stale.status_code == 412, (path, stale.text)
        assert stale.headers["content-type"].startswith("application/problem+json")
        assert stale.json()["code"] == "precondition_failed"
        assert client.get(ticket, headers=dispatcher).headers["ETag"] == etag  # nothing changed
        done = client.post(ticket + path, json=body, headers={**headers, "If-Match": etag})
        assert done.status_code in (200, 201), (path, done.text)
        etag = done.headers["ETag"]
        assert etag not in seen
        seen.add(etag)
        assert client.get(ticket, headers=dispatcher).headers["ETag"] == etag
    # A citizen's action and a worker's change move it too.
    assert (
        client.post(
            ticket + "/transitions",
            json={"to": "on_hold", "question": "Số nhà?"},
            headers={**dispatcher, "If-Match": f'"x", {etag}'},
        ).status_code
        == 200
    )
    before = client.get(ticket, headers=dispatcher).headers["ETag"]
    client.post(
        f"/v1/reports/{created['tracking_code']}/replies",
        json={"message": "Số 12"},
        headers={"X-Citizen-Token": created["citizen_token"]},
    )
    assert client.get(ticket, headers=dispatcher).headers["ETag"] != before
    assert (
        client.post(
            ticket + "/comments",
            json={"body": "ok", "visibility": "internal"},
            headers={**dispatcher, "If-Match": before},
        ).status_code
        == 412
    )
    assert (
        client.post(
            ticket + "/comments", json={"body": "ok", "visibility": "internal"}, headers={**dispatcher, "If-Match": "*"}
        ).status_code
        == 201
    )


def test_officer_cannot_link_a_duplicate_to_a_report_it_cannot_see(client, api_key):
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    mine = file_report(client, api_key)
    theirs = file_report(
        client, api_key, description="Mất nước sinh hoạt cả khu phố từ sáng", service_code="water_supply", lat=10.78
    )
    hidden = move(client, officer, mine["id"], to="duplicate", duplicate_of=theirs["tracking_code"])
    unknown = move(client, officer, mine["id"], to="duplicate", duplicate_of="ZZZZ-ZZZZ")
    assert hidden.status_code == unknown.status_code == 422
    assert hidden.json()["code"] == unknown.json()["code"] == "report_not_found"
    assert client.get(f"/v1/reports/{mine['tracking_code']}").json()["duplicate_of"] is None
    other = file_report(client, api_key, lat=10.7740)
    linked = move(client, officer, other["id"], to="duplicate", duplicate_of=mine["tracking_code"])
    assert linked.status_code == 200
    assert client.get(f"/v1/reports/{other['tracking_code']}").json()["duplicate_of"] == mine["tracking_code"]


def test_two_tickets_cannot_be_closed_as_each_others_duplicate(client, api_key):
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    first = file_report(client, api_key)
    second = file_report(client, api_key, lat=10.7740)
    itself = move(client, officer, first["id"], to="duplicate", duplicate_of=first["tracking_code"])
    assert itself.status_code == 422 and itself.json()["code"] == "duplicate_of_itself"
    assert move(client, officer, second["id"], to="duplicate", duplicate_of=first["tracking_code"]).status_code == 200
    # The original named back as a duplicate of its own copy: then nobody would work the problem.
    cycle = move(client, officer, first["id"], to="duplicate", duplicate_of=second["tracking_code"])
    assert cycle.status_code == 422, cycle.text
    assert cycle.json()["code"] == "original_is_duplicate"
    assert cycle.json()["errors"][0]["field"] == "duplicate_of"
    page = client.get(f"/v1/reports/{first['tracking_code']}").json()
    assert page["status"] != "duplicate" and page["duplicate_of"] is None


def test_a_report_that_keeps_failing_goes_to_a_dispatcher_and_the_sweep_moves_on(
    client, api_key, settings, monkeypatch
):
    from service.classify.model import Classifier
    from tests.conftest import worker_context
    from workers.reports import sweep_stale_reports

    real_predict = Classifier.predict_many

    def predict_many(self, texts, threshold):
        texts = list(texts)
        if any("POISON" in text for text in texts):
            raise ValueError("the model cannot read this text")
        return real_predict(self, texts, threshold)

    monkeypatch.setattr(Classifier, "predict_many", predict_many)
    monkeypatch.setattr(settings, "stale_report_seconds", 0.001)
    poison = client.post(
        "/v1/reports", json=report_body(description="POISON đèn hỏng"), headers={"X-API-Key": api_key}
    ).json()
    run_worker(client)
    page = client.get(f"/v1/reports/{poison['tracking_code']}").json()
    assert page["status"] == "received"  # one failure: it will be tried again
    ctx = worker_context(client)
    for _ in range(settings.processing_max_failures - 1):
        fine = client.post("/v1/reports", json=report_body(lat=10.70 + 0.01 * _), headers={"X-API-Key": api_key}).json()
        assert client.portal.call(sweep_stale_reports, ctx) >= 1
        run_worker(client)
        assert client.get(f"/v1/reports/{fine['tracking_code']}").json()["status"] == "assigned"
    page = client.get(f"/v1/reports/{poison['tracking_code']}", headers={"Accept-Language": "en"}).json()
    assert page["status"] == "needs_triage"
    assert page["timeline"][-1]["code"] == "processing_failed"
    assert page["timeline"][-1]["message"] == "Waiting for a dispatcher to look at it"
    dispatcher = make_user(client, "dispatch", "dispatcher")
    event = timeline(client, dispatcher, poison["id"])[-1]
    assert event["data"]["attempts"] == settings.processing_max_failures and event["data"]["error"] == "ValueError"
    assert client.portal.call(sweep_stale_reports, ctx) == 0  # nothing left for the sweep
    # The dispatcher decides what the pipeline could not.
    triaged = client.post(
        f"/v1/tickets/{poison['id']}/triage", json={"service_code": "street_lighting"}, headers=dispatcher
    )
    assert triaged.status_code == 200, triaged.text
    assert (triaged.json()["status"], triaged.json()["department_code"]) == ("assigned", "chieu-sang")


def test_an_app_key_reads_a_ticket_as_the_citizen_does(client, api_key):
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    created = file_report(client, api_key)
    client.post(
        f"/v1/tickets/{created['id']}/comments",
        json={"body": "Nhà thầu Phúc Lộc hẹn thứ Hai", "visibility": "internal"},
        headers=officer,
    )
    client.post(
        f"/v1/tickets/{created['id']}/comments",
        json={"body": "Sẽ thay bóng trong tuần", "visibility": "public"},
        headers=officer,
    )
    client.post(
        f"/v1/tickets/{created['id']}/assignee",
        json={"assignee_username": "officer.lighting"},
        headers=make_user(client, "dispatch", "dispatcher"),
    )
    as_app = client.get(f"/v1/tickets/{created['id']}", headers={"X-API-Key": api_key})
    assert as_app.status_code == 200
    body = as_app.json()
    text = as_app.text
    for internal in ("Phúc Lộc", "officer.lighting", "routed", "classified", "sla_set", '"rule"', "model_version"):
        assert internal not in text, internal
    assert "Sẽ thay bóng trong tuần" in text
    assert (
        body["assignee_id"] is None and body["classification_confidence"] is None and body["allowed_transitions"] == []
    )
    assert {event["actor"] for event in body["timeline"]} <= {"city", "citizen"}
    staff = client.get(f"/v1/tickets/{created['id']}", headers=officer).json()
    assert "Phúc Lộc" in str(staff["timeline"]) and staff["assignee_id"]


URGENT_ROAD = "Cây xanh bật gốc đổ đè lên người đi xe máy trên đường Lê Lợi, cần cứu gấp"


def test_staff_cannot_act_on_a_report_the_pipeline_has_not_processed_yet(client, api_key):
    dispatcher = make_user(client, "dispatch", "dispatcher")
    supervisor = make_user(client, "sup", "admin")
    created = client.post(
        "/v1/reports", json=report_body(description=URGENT_ROAD), headers={"X-API-Key": api_key}
    ).json()
    ticket = f"/v1/tickets/{created['id']}"
    before = client.get(ticket, headers=dispatcher)
    assert before.json()["status"] == "received"
    # Only rejecting (spam) is offered while the worker has not processed it.
    assert before.json()["allowed_transitions"] == ["rejected"]
    assert client.get(ticket, headers=supervisor).json()["allowed_transitions"] == ["rejected"]

    refused = [
        client.post(ticket + "/triage", json={"service_code": "road_traffic"}, headers=dispatcher),
        client.post(ticket + "/transitions", json={"to": "assigned"}, headers=dispatcher),
        client.post(ticket + "/transitions", json={"to": "duplicate", "duplicate_of": "ZZZZ-ZZZZ"}, headers=dispatcher),
        client.post(ticket + "/transfer", json={"department_code": "sawaco", "reason": "Cấp nước"}, headers=dispatcher),
        client.post(ticket + "/assignee", json={"assignee_username": None}, headers=dispatcher),
        client.post(ticket + "/transitions", json={"to": "in_progress"}, headers=supervisor),
    ]
    for response in refused:
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "not_yet_processed"
        assert "try again" in response.json()["title"]
    bulk = client.post(
        "/v1/tickets/bulk",
        json={"tickets": [created["tracking_code"]], "action": {"type": "transition", "to": "assigned"}},
        headers=dispatcher,
    ).json()
    assert (bulk["failed"], bulk["results"][0]["status"]) == (1, 409)
    assert bulk["results"][0]["problem"]["code"] == "not_yet_processed"
    unchanged = client.get(ticket, headers=dispatcher)
    assert unchanged.headers["ETag"] == before.headers["ETag"]
    assert [event["code"] for event in unchanged.json()["timeline"]] == ["received"]

    # The worker then does all of its work: located, prioritised, checked for duplicates, routed.
    run_worker(client)
    processed = client.get(ticket, headers=dispatcher).json()
    codes = [event["code"] for event in processed["timeline"]]
    assert {"located", "prioritised", "routed", "sla_set"} <= set(codes), codes
    assert processed["status"] in ("assigned", "needs_triage")
    assert processed["jurisdiction_code"] is not None and processed["priority"] == "urgent"
    assert processed["due_at"] is not None
    # And now the dispatcher's decision goes through.
    triaged = client.post(ticket + "/triage", json={"service_code": "road_traffic"}, headers=dispatcher)
    assert triaged.status_code == 200, triaged.text
    assert (triaged.json()["status"], triaged.json()["service_code"]) == ("assigned", "road_traffic")
    assert triaged.json()["priority"] == "urgent"


def test_a_report_not_yet_processed_can_still_be_rejected_as_spam(client, api_key):
    dispatcher = make_user(client, "dispatch", "dispatcher")
    created = client.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}).json()
    rejected = move(client, dispatcher, created["id"], to="rejected", reason="Quảng cáo")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    run_worker(client)  # the worker leaves a report staff already decided alone
    page = client.get(f"/v1/reports/{created['tracking_code']}").json()
    assert page["status"] == "rejected"


def test_a_reopened_duplicate_leaves_its_original_and_stops_following_it(client, api_key, receiver):
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    supervisor = make_user(client, "sup.xd", "supervisor", "so-xay-dung")
    second_app = key(client, "citizen_app")
    subscribe(client, second_app, receiver.url)  # the app the duplicate came from
    original = file_report(client, api_key)
    duplicate = client.post(
        "/v1/reports",
        json=report_body(description="Đèn đường chợ Bến Thành tắt mấy đêm rồi", service_code="street_lighting"),
        headers={"X-API-Key": second_app},
    ).json()
    run_worker(client)  # the pipeline finds the original
    assert client.get(f"/v1/reports/{original['tracking_code']}").json()["supporter_count"] == 1

    reopened = move(client, supervisor, duplicate["id"], to="reopened")
    assert reopened.status_code == 200, reopened.text
    assert (reopened.json()["status"], reopened.json()["duplicate_of_id"]) == ("reopened", None)
    event = reopened.json()["timeline"][-1]
    assert event["data"]["status"] == {"from": "duplicate", "to": "reopened"}
    assert event["data"]["former_original"] == original["tracking_code"]
    page = client.get(f"/v1/reports/{duplicate['tracking_code']}").json()
    assert (page["status"], page["duplicate_of"], page["original"]) == ("reopened", None, None)
    assert client.get(f"/v1/reports/{original['tracking_code']}").json()["supporter_count"] == 0
    [request] = client.get(f"/open311/v2/requests/{duplicate['tracking_code']}.json").json()
    assert original["tracking_code"] not in (request.get("service_notice") or "")

    # The original moving on is no longer the reopened report's news.
    assert move(client, officer, original["id"], to="in_progress").status_code == 200
    deliver(client)
    heard = [
        r.payload["type"] for r in receiver.requests if r.payload["data"]["tracking_code"] == duplicate["tracking_code"]
    ]
    assert "report.original_status_changed" not in heard
    assert heard[-2:] == ["report.status_changed", "report.reopened"]
    codes = [entry["code"] for entry in client.get(f"/v1/reports/{duplicate['tracking_code']}").json()["timeline"]]
    assert codes[-1] == "status_changed" and "original_status_changed" not in codes


def test_a_duplicate_marked_by_staff_and_reopened_gives_back_its_supporter(client, api_key):
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    supervisor = make_user(client, "sup.xd", "supervisor", "so-xay-dung")
    first = file_report(client, api_key)
    second = file_report(client, api_key, lat=10.7740)
    linked = move(client, officer, second["id"], to="duplicate", duplicate_of=first["tracking_code"])
    assert linked.status_code == 200, linked.text
    original = client.get(f"/v1/tickets/{first['id']}", headers=officer).json()
    assert original["supporter_count"] == 1
    [request] = client.get(f"/open311/v2/requests/{second['tracking_code']}.json").json()
    assert first["tracking_code"] in request["service_notice"]  # what the citizen read while it was a duplicate

    assert move(client, supervisor, second["id"], to="reopened").status_code == 200
    after = client.get(f"/v1/tickets/{first['id']}", headers=officer)
    assert after.json()["supporter_count"] == 0
    assert after.headers["ETag"] != original["etag"]
    assert after.json()["timeline"][-1]["code"] == "supporter_removed"
    assert after.json()["timeline"][-1]["data"] == {"duplicate": second["tracking_code"]}
    [request] = client.get(f"/open311/v2/requests/{second['tracking_code']}.json").json()
    assert first["tracking_code"] not in (request.get("service_notice") or "")
    # A report of its own again: it can be worked, or linked anew.
    assert move(client, officer, second["id"], to="in_progress").status_code == 200
    assert client.get(f"/v1/reports/{second['tracking_code']}").json()["duplicate_of"] is None
