"""The officer's work-list: take and give back tickets, filter and sort the list, search without
diacritics, see who can take a ticket, and act on many tickets at once (each on its own)."""

from datetime import timedelta
from uuid import UUID

import pytest

from service.auth import users
from service.models import Report
from service.models.types import utcnow
from service.reports.search import fold, like_pattern
from service.tickets import worklist
from tests.conftest import in_app, run_worker
from tests.factories import report_body

PASSWORD = "correct horse battery"
# Points in the demo map's wards, each far enough from the others not to be taken for a duplicate.
BEN_THANH = [(10.7700 + n * 0.0012, 106.6939) for n in range(8)]
GO_VAP = (10.82575, 106.68491)


def make_user(client, username, role, department=None, full_name=""):
    in_app(
        client,
        lambda s: users.create(
            s, username=username, password=PASSWORD, role=role, department_code=department, full_name=full_name
        ),
    )
    response = client.post("/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def lan(client):
    """An officer of the public lighting company."""
    return make_user(client, "lan", "officer", "chieu-sang", full_name="Nguyễn Thị Lan")


@pytest.fixture
def minh(client):
    """Lan's colleague."""
    return make_user(client, "minh", "officer", "chieu-sang", full_name="Trần Văn Minh")


@pytest.fixture
def water_officer(client):
    return make_user(client, "officer.water", "officer", "sawaco")


@pytest.fixture
def dispatcher(client):
    return make_user(client, "dispatch", "dispatcher")


def file_reports(client, api_key, *bodies: dict) -> list[dict]:
    """Street-lighting reports (routed to chieu-sang), processed by a real worker."""
    created = []
    for n, fields in enumerate(bodies):
        lat, lon = BEN_THANH[n]
        body = report_body(
            **{
                "description": f"Đèn đường số {n} bị tắt",
                "service_code": "street_lighting",
                "lat": lat,
                "lon": lon,
                **fields,
            }
        )
        response = client.post("/v1/reports", json=body, headers={"X-API-Key": api_key})
        assert response.status_code in (200, 201, 202), response.text
        created.append(response.json())
    run_worker(client)
    return created


def listed(client, headers, **params) -> list[str]:
    response = client.get("/v1/tickets", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["tracking_code"] for item in response.json()["items"]]


def update_report(client, ticket_id: str, **values) -> None:
    async def work(session):
        report = await session.get(Report, UUID(ticket_id))
        for name, value in values.items():
            setattr(report, name, value)
        session.add(report)

    in_app(client, work)


# --- taking a ticket ---------------------------------------------------------------------------


def test_officer_claims_a_ticket_and_it_moves_to_in_progress(client, api_key, lan):
    (ticket,) = file_reports(client, api_key, {})
    before = client.get(f"/v1/tickets/{ticket['id']}", headers=lan)
    assert before.json()["status"] == "assigned" and before.json()["assignee"] is None

    claimed = client.post(f"/v1/tickets/{ticket['id']}/claim", headers={**lan, "If-Match": before.headers["ETag"]})
    assert claimed.status_code == 200, claimed.text
    body = claimed.json()
    assert body["status"] == "in_progress"
    assert body["assignee"]["username"] == "lan" and body["assignee"]["name"] == "Nguyễn Thị Lan"
    assert body["acknowledged_at"] is not None
    assert claimed.headers["ETag"] != before.headers["ETag"]
    codes = [event["code"] for event in body["timeline"]]
    assert codes[-2:] == ["assignee_changed", "status_changed"]
    # Taking it again changes nothing.
    again = client.post(f"/v1/tickets/{ticket['id']}/claim", headers=lan)
    assert again.status_code == 200 and again.headers["ETag"] == claimed.headers["ETag"]


def test_claim_with_a_stale_etag_is_412_and_changes_nothing(client, api_key, lan):
    (ticket,) = file_reports(client, api_key, {})
    etag = client.get(f"/v1/tickets/{ticket['id']}", headers=lan).headers["ETag"]
    client.post(
        f"/v1/tickets/{ticket['id']}/comments", json={"body": "đã ghi nhận", "visibility": "internal"}, headers=lan
    )
    stale = client.post(f"/v1/tickets/{ticket['id']}/claim", headers={**lan, "If-Match": etag})
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert client.get(f"/v1/tickets/{ticket['id']}", headers=lan).json()["assignee"] is None


def test_a_ticket_on_hold_is_taken_but_keeps_waiting_for_the_citizen(client, api_key, lan, minh):
    (ticket,) = file_reports(client, api_key, {})
    client.post(f"/v1/tickets/{ticket['id']}/transitions", json={"to": "in_progress"}, headers=minh)
    client.post(
        f"/v1/tickets/{ticket['id']}/transitions", json={"to": "on_hold", "question": "Trụ đèn số mấy ạ?"}, headers=minh
    )
    claimed = client.post(f"/v1/tickets/{ticket['id']}/claim", headers=lan).json()
    assert claimed["status"] == "on_hold" and claimed["assignee"]["username"] == "lan"


def test_officer_cannot_take_a_ticket_a_colleague_holds_and_only_the_holder_gives_it_back(client, api_key, lan, minh):
    (ticket,) = file_reports(client, api_key, {})
    assert client.post(f"/v1/tickets/{ticket['id']}/claim", headers=lan).status_code == 200

    taken = client.post(f"/v1/tickets/{ticket['id']}/claim", headers=minh)
    assert taken.status_code == 409 and taken.json()["code"] == "already_claimed"
    not_minhs = client.post(f"/v1/tickets/{ticket['id']}/unclaim", headers=minh)
    assert not_minhs.status_code == 409 and not_minhs.json()["code"] == "not_your_ticket"

    given_back = client.post(f"/v1/tickets/{ticket['id']}/unclaim", headers=lan)
    assert given_back.status_code == 200
    assert given_back.json()["assignee"] is None and given_back.json()["status"] == "in_progress"
    assert client.post(f"/v1/tickets/{ticket['id']}/claim", headers=minh).json()["assignee"]["username"] == "minh"


def test_an_officer_who_leaves_gives_back_the_open_tickets_they_held(client, api_key, lan, minh, dispatcher):
    open_ticket, done_ticket = file_reports(client, api_key, {}, {})
    for ticket in (open_ticket, done_ticket):
        assert client.post(f"/v1/tickets/{ticket['id']}/claim", headers=lan).status_code == 200
    resolved = client.post(
        f"/v1/tickets/{done_ticket['id']}/transitions",
        json={"to": "resolved", "public_reply": "Đã thay bóng đèn."},
        headers=lan,
    )
    assert resolved.status_code == 200, resolved.text

    changed = in_app(client, lambda s: users.change_account(s, "lan", active=False))

    assert changed.tickets_released == 1
    back = client.get(f"/v1/tickets/{open_ticket['id']}", headers=minh).json()
    assert back["assignee"] is None and back["status"] == "in_progress"  # the work goes on, with someone else
    last = back["timeline"][-1]
    assert (last["code"], last["actor"], last["public"]) == ("assignee_changed", "system", False)
    assert last["data"]["released_from"] == "lan"
    # Nobody has to wait for a colleague who is not there: the queue shows it, and Minh takes it.
    assert open_ticket["tracking_code"] in listed(client, minh, assignee="none")
    assert client.post(f"/v1/tickets/{open_ticket['id']}/claim", headers=minh).json()["assignee"]["username"] == "minh"
    # What Lan finished stays hers in the record.
    assert client.get(f"/v1/tickets/{done_ticket['id']}", headers=minh).json()["assignee"]["username"] == "lan"
    # And nobody can give her a ticket any more.
    (another,) = file_reports(client, api_key, {"description": "Đèn đường khác bị tắt"})
    given = client.post(f"/v1/tickets/{another['id']}/assignee", json={"assignee_username": "lan"}, headers=dispatcher)
    assert given.status_code == 422, given.text


def test_a_ticket_held_by_someone_who_left_the_department_can_be_taken(client, api_key, lan, minh):
    """Held by an officer moved away before tickets were given back on leaving (or by a direct change
    of the database): the holder no longer counts, so the ticket is not stuck."""
    (ticket,) = file_reports(client, api_key, {})
    assert client.post(f"/v1/tickets/{ticket['id']}/claim", headers=lan).status_code == 200

    async def moved_without_release(session):
        from sqlmodel import select

        from service.models import StaffUser

        user = (await session.exec(select(StaffUser).where(StaffUser.username == "lan"))).one()
        user.department_code = "sawaco"
        session.add(user)

    in_app(client, moved_without_release)
    taken = client.post(f"/v1/tickets/{ticket['id']}/claim", headers=minh)
    assert taken.status_code == 200, taken.text
    assert taken.json()["assignee"]["username"] == "minh"


def test_officer_cannot_claim_another_departments_ticket(client, api_key, water_officer, dispatcher):
    (ticket,) = file_reports(client, api_key, {})
    assert client.post(f"/v1/tickets/{ticket['id']}/claim", headers=water_officer).status_code == 404
    # A dispatcher gives tickets out; taking one is an officer's or supervisor's act.
    assert client.post(f"/v1/tickets/{ticket['id']}/claim", headers=dispatcher).status_code == 403


def test_a_closed_ticket_cannot_be_claimed(client, api_key, lan):
    (ticket,) = file_reports(client, api_key, {})
    client.post(f"/v1/tickets/{ticket['id']}/transitions", json={"to": "rejected", "reason": "trùng"}, headers=lan)
    refused = client.post(f"/v1/tickets/{ticket['id']}/claim", headers=lan)
    assert refused.status_code == 409 and refused.json()["code"] == "illegal_transition"


# --- filtering and sorting the list --------------------------------------------------------------


def test_assignee_filter_finds_mine_nobodys_and_a_colleagues(client, api_key, lan, minh):
    mine, minhs, nobodys = file_reports(client, api_key, {}, {}, {})
    client.post(f"/v1/tickets/{mine['id']}/claim", headers=lan)
    client.post(f"/v1/tickets/{minhs['id']}/claim", headers=minh)

    assert listed(client, lan, assignee="me") == [mine["tracking_code"]]
    assert listed(client, lan, assignee="none") == [nobodys["tracking_code"]]
    assert listed(client, lan, assignee="minh") == [minhs["tracking_code"]]
    minh_id = client.get(f"/v1/tickets/{minhs['id']}", headers=lan).json()["assignee"]["id"]
    assert listed(client, lan, assignee=minh_id) == [minhs["tracking_code"]]
    unknown = client.get("/v1/tickets", params={"assignee": "nobody.here"}, headers=lan)
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_assignee"


def test_an_app_key_cannot_filter_by_assignee_so_cannot_probe_staff_usernames(client, api_key, lan):
    (ticket,) = file_reports(client, api_key, {})
    client.post(f"/v1/tickets/{ticket['id']}/claim", headers=lan)
    app = {"X-API-Key": api_key}
    answers = [client.get("/v1/tickets", params={"assignee": value}, headers=app) for value in ("lan", "ghost", "me")]
    # A real officer's name and a made-up one are answered alike: nothing tells them apart.
    assert {(answer.status_code, answer.json()["code"]) for answer in answers} == {(403, "forbidden")}
    assert client.get("/v1/tickets/export.csv", params={"assignee": "lan"}, headers=app).status_code == 403
    listing = client.get("/v1/tickets", headers=app)
    assert listing.status_code == 200 and all(item["assignee"] is None for item in listing.json()["items"])


def test_status_groups_and_comma_lists_filter_the_list(client, api_key, lan):
    working, waiting, done = file_reports(client, api_key, {}, {}, {})
    client.post(f"/v1/tickets/{working['id']}/transitions", json={"to": "in_progress"}, headers=lan)
    client.post(
        f"/v1/tickets/{done['id']}/transitions",
        json={"to": "rejected", "reason": "không thuộc thẩm quyền"},
        headers=lan,
    )

    assert set(listed(client, lan, status="open")) == {working["tracking_code"], waiting["tracking_code"]}
    assert listed(client, lan, status="closed") == [done["tracking_code"]]
    assert set(listed(client, lan, status="assigned,in_progress")) == {
        working["tracking_code"],
        waiting["tracking_code"],
    }
    assert listed(client, lan, status=["in_progress", "rejected"], sort="created_at") == [
        working["tracking_code"],
        done["tracking_code"],
    ]


def test_unknown_status_filter_is_422(client, lan):
    for status in ("opened", "assigned,in_progess"):
        response = client.get("/v1/tickets", params={"status": status}, headers=lan)
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["code"] == "unknown_status" and problem["errors"][0]["field"] == "status"


def test_unknown_department_category_or_jurisdiction_filter_is_422_on_list_and_export(client, api_key, lan):
    file_reports(client, api_key, {})
    for path in ("/v1/tickets", "/v1/tickets/export.csv"):
        for field, code in (("department", "unknown_department"), ("category", "unknown_category")):
            response = client.get(path, params={field: "nope"}, headers=lan)
            assert response.status_code == 422, (path, field, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["code"] == code and response.json()["errors"][0]["field"] == field
        response = client.get(path, params={"jurisdiction": "NOPE"}, headers=lan)
        assert response.status_code == 422 and response.json()["code"] == "unknown_jurisdiction"
        known = {"department": "chieu-sang", "category": "street_lighting", "jurisdiction": "HCM"}
        assert client.get(path, params=known, headers=lan).status_code == 200


def test_a_sort_key_named_twice_is_422(client, lan):
    for path in ("/v1/tickets", "/v1/tickets/export.csv"):
        response = client.get(path, params={"sort": "priority,-priority"}, headers=lan)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "sort"


def test_jurisdiction_filter_on_the_city_includes_its_wards(client, api_key, lan):
    ben_thanh, go_vap = file_reports(client, api_key, {}, {"lat": GO_VAP[0], "lon": GO_VAP[1]})
    assert set(listed(client, lan, jurisdiction="HCM")) == {ben_thanh["tracking_code"], go_vap["tracking_code"]}
    assert listed(client, lan, jurisdiction="GO-VAP") == [go_vap["tracking_code"]]


def test_work_list_sorts_by_priority_then_deadline_across_pages(client, api_key, lan):
    tickets = file_reports(client, api_key, {}, {}, {}, {}, {})
    now = utcnow()
    plan = [("low", 1), ("urgent", 5), ("normal", 2), ("urgent", 3), ("normal", None)]
    for ticket, (priority, hours) in zip(tickets, plan, strict=True):
        update_report(client, ticket["id"], priority=priority, due_at=now + timedelta(hours=hours) if hours else None)

    def walk(sort: str) -> list[str]:
        seen, cursor = [], None
        while True:
            params = {"sort": sort, "limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/tickets", params=params, headers=lan).json()
            seen += [item["tracking_code"] for item in page["items"]]
            if (cursor := page["next_cursor"]) is None:
                return seen

    code = [ticket["tracking_code"] for ticket in tickets]
    # Most urgent first, and within a priority the nearest deadline (none last).
    assert walk("priority,due_at") == [code[3], code[1], code[2], code[4], code[0]]
    # Mixed directions page just as well: latest deadline first within each priority.
    assert walk("priority,-due_at") == [code[1], code[3], code[4], code[2], code[0]]
    least_urgent_first = [code.index(seen) for seen in walk("-priority")]
    assert [plan[index][0] for index in least_urgent_first] == ["low", "normal", "normal", "urgent", "urgent"]
    bad = client.get("/v1/tickets", params={"sort": "priority,colour"}, headers=lan)
    assert bad.status_code == 422
    wrong_cursor = client.get("/v1/tickets", params={"sort": "priority,due_at", "limit": 2}, headers=lan).json()[
        "next_cursor"
    ]
    assert (
        client.get("/v1/tickets", params={"sort": "created_at", "cursor": wrong_cursor}, headers=lan).status_code == 422
    )


def test_list_items_show_assignee_name_address_and_time_left(client, api_key, lan):
    late, on_time = file_reports(client, api_key, {"address": "Số 12 Lê Lợi, Phường Bến Thành"}, {})
    client.post(f"/v1/tickets/{late['id']}/claim", headers=lan)
    update_report(client, late["id"], due_at=utcnow() - timedelta(hours=2))
    update_report(client, on_time["id"], due_at=utcnow() + timedelta(hours=3))

    items = {item["tracking_code"]: item for item in client.get("/v1/tickets", headers=lan).json()["items"]}
    first, second = items[late["tracking_code"]], items[on_time["tracking_code"]]
    assert first["assignee"]["name"] == "Nguyễn Thị Lan"
    assert first["address"] == "Số 12 Lê Lợi, Phường Bến Thành"
    assert -2 * 3600 - 60 < first["time_left_seconds"] < -2 * 3600 + 60
    assert second["assignee"] is None
    assert 3 * 3600 - 60 < second["time_left_seconds"] <= 3 * 3600
    # The app that filed them reads no staff names.
    app_view = client.get("/v1/tickets", headers={"X-API-Key": api_key}).json()["items"]
    assert len(app_view) == 2 and all(item["assignee"] is None for item in app_view)


# --- search without diacritics -------------------------------------------------------------------


def test_search_without_diacritics_finds_vietnamese_street_names(client, api_key, lan):
    hue, loi, dong_khoi = file_reports(
        client,
        api_key,
        {"description": "Đèn đường trên phố đi bộ Nguyễn Huệ bị tắt cả dãy"},
        {"description": "Trụ đèn nghiêng sắp đổ", "address": "Số 40 Lê Lợi, Phường Bến Thành"},
        {"description": "Đèn trang trí đường Đồng Khởi chớp tắt liên tục"},
    )
    assert listed(client, lan, q="nguyen hue") == [hue["tracking_code"]]
    assert listed(client, lan, q="NGUYEN  HUE") == [hue["tracking_code"]]
    assert listed(client, lan, q="Nguyễn Huệ") == [hue["tracking_code"]]
    assert listed(client, lan, q="le loi") == [loi["tracking_code"]]  # in the address
    assert listed(client, lan, q="dong khoi") == [dong_khoi["tracking_code"]]  # đ is d
    assert listed(client, lan, q="đồng khởi") == [dong_khoi["tracking_code"]]
    assert listed(client, lan, q="hue nguyen") == []  # a phrase, in its order
    assert listed(client, lan, q="100%") == []  # LIKE's wildcards are plain characters
    assert listed(client, lan, q=hue["tracking_code"][-4:].lower()) == [hue["tracking_code"]]


def test_search_finds_reports_the_pipeline_has_not_processed_yet(client, api_key, dispatcher):
    processed = file_reports(client, api_key, {"description": "Đèn đường trên phố Nguyễn Huệ bị tắt"})[0]
    waiting = client.post(  # no worker runs after this one: it stays `received`
        "/v1/reports",
        json=report_body(description="Cống trên đường Nguyễn Huệ bị nghẹt", lat=BEN_THANH[1][0], lon=BEN_THANH[1][1]),
        headers={"X-API-Key": api_key},
    ).json()
    assert client.get(f"/v1/reports/{waiting['tracking_code']}").json()["status"] == "received"
    assert sorted(listed(client, dispatcher, q="nguyen hue")) == sorted(
        [processed["tracking_code"], waiting["tracking_code"]]
    )
    assert listed(client, dispatcher, q="cong tren") == [waiting["tracking_code"]]


def test_search_reads_the_trigram_index_which_leaves_out_waiting_reports(client, settings, api_key, dispatcher):
    """PostgreSQL: the search query can be served by the trigram index, and intake's INSERT writes nothing
    into it (the report enters it when the pipeline moves it on)."""
    if settings.is_sqlite:
        pytest.skip("SQLite has no trigram index: its LIKE scans")
    from sqlalchemy import text

    from service.tickets.service import TicketFilters, _conditions

    async def definition(session):
        return (await session.execute(text("SELECT pg_get_indexdef('ix_reports_search_text_trigram'::regclass)"))).scalar()

    assert "WHERE ((status)::text <> 'received'::text)" in in_app(client, definition)

    async def plan(session):
        from sqlmodel import select

        conditions = await _conditions(session, None, TicketFilters(q="nguyen hue"))  # type: ignore[arg-type]
        query = select(Report.id).where(*conditions)
        compiled = query.compile(dialect=session.bind.dialect, compile_kwargs={"literal_binds": True})
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        rows = await session.execute(text(f"EXPLAIN {compiled}"))
        return "\n".join(row[0] for row in rows)

    assert "ix_reports_search_text_trigram" in in_app(client, plan)


def test_folding_handles_every_vietnamese_letter():
    assert fold("Đường Nguyễn Huệ") == "duong nguyen hue"
    assert fold("ĂÂÊÔƠƯ ăâêôơư Đđ") == "aaeoou aaeoou dd"
    assert fold("  Lê\tLợi \n") == "le loi"
    assert like_pattern("50%_off") == "%50\\%\\_off%"
    assert like_pattern("   ") is None


def test_status_filter_and_sort_rules():
    assert worklist.statuses(["open"]) == ["received", "needs_triage", "assigned", "in_progress", "on_hold", "reopened"]
    assert worklist.statuses(["assigned, in_progress", "assigned"]) == ["assigned", "in_progress"]
    assert worklist.statuses(None) is None
    with pytest.raises(worklist.UnknownStatus):
        worklist.statuses(["done"])
    assert [(key.field, key.descending) for key in worklist.sort_keys("priority,-due_at")] == [
        ("priority", False),
        ("due_at", True),
    ]
    with pytest.raises(ValueError, match="more than once"):
        worklist.sort_keys("priority,-due_at,priority")


# --- who can take a ticket -----------------------------------------------------------------------


def test_department_officers_are_listed_for_assigning_within_roles(
    client, api_key, lan, minh, water_officer, dispatcher
):
    (ticket,) = file_reports(client, api_key, {})
    client.post(f"/v1/tickets/{ticket['id']}/claim", headers=minh)
    supervisor = make_user(client, "so.xay.dung", "supervisor", "so-xay-dung")  # chieu-sang is under it

    for headers in (lan, dispatcher, supervisor):
        response = client.get("/v1/departments/chieu-sang/officers", headers=headers)
        assert response.status_code == 200, response.text
        officers = response.json()
        assert [(o["username"], o["name"], o["open_tickets"]) for o in officers] == [
            ("lan", "Nguyễn Thị Lan", 0),
            ("minh", "Trần Văn Minh", 1),
        ]
    assert client.get("/v1/departments/chieu-sang/officers", headers=water_officer).status_code == 403
    assert client.get("/v1/departments/no-such-unit/officers", headers=dispatcher).status_code == 404
    assert client.get("/v1/departments/chieu-sang/officers", headers={"X-API-Key": api_key}).status_code == 403


# --- bulk actions --------------------------------------------------------------------------------


def test_bulk_assign_reports_each_ticket_on_its_own(client, api_key, lan, dispatcher):
    lighting_one, lighting_two = file_reports(client, api_key, {}, {})
    water = file_reports(client, api_key, {"service_code": "water_supply", "description": "Mất nước hai ngày nay"})[0]
    response = client.post(
        "/v1/tickets/bulk",
        json={
            "tickets": [lighting_one["id"], water["tracking_code"], "NOPE-NOPE", lighting_two["tracking_code"]],
            "action": {"type": "assign", "assignee_username": "lan"},
        },
        headers=dispatcher,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(item["ticket"], item["status"]) for item in body["results"]] == [
        (lighting_one["id"], 200),
        (water["tracking_code"], 422),  # lan is not of the water company
        ("NOPE-NOPE", 404),
        (lighting_two["tracking_code"], 200),
    ]
    assert (body["succeeded"], body["failed"]) == (2, 2)
    assert body["results"][1]["problem"]["errors"][0]["field"] == "assignee_username"
    assert body["results"][2]["problem"]["code"] == "ticket_not_found"
    assert set(listed(client, lan, assignee="me")) == {lighting_one["tracking_code"], lighting_two["tracking_code"]}
    fresh = client.get(f"/v1/tickets/{lighting_one['id']}", headers=lan)
    assert body["results"][0]["etag"] == fresh.headers["ETag"]


def test_bulk_transition_commits_each_ticket_separately_and_hides_invisible_ones(client, api_key, lan, water_officer):
    ready, rejected = file_reports(client, api_key, {}, {})
    water = file_reports(client, api_key, {"service_code": "water_supply", "description": "Mất nước hai ngày nay"})[0]
    client.post(f"/v1/tickets/{rejected['id']}/transitions", json={"to": "rejected", "reason": "trùng"}, headers=lan)

    response = client.post(
        "/v1/tickets/bulk",
        json={
            "tickets": [ready["id"], rejected["id"], water["id"]],
            "action": {"type": "transition", "to": "in_progress"},
        },
        headers=lan,
    )
    results = response.json()["results"]
    assert [item["status"] for item in results] == [200, 409, 404]  # the water ticket is invisible to lan
    assert results[1]["problem"]["code"] == "illegal_transition"
    assert client.get(f"/v1/tickets/{ready['id']}", headers=lan).json()["status"] == "in_progress"
    assert client.get(f"/v1/tickets/{rejected['id']}", headers=lan).json()["status"] == "rejected"
    assert client.get(f"/v1/tickets/{water['id']}", headers=water_officer).json()["status"] == "assigned"


def test_bulk_comment_and_transfer_act_on_every_ticket(client, api_key, lan):
    first, second = file_reports(client, api_key, {}, {})
    commented = client.post(
        "/v1/tickets/bulk",
        json={
            "tickets": [first["id"], second["id"]],
            "action": {"type": "comment", "body": "Đội đang xử lý", "visibility": "public"},
        },
        headers=lan,
    ).json()
    assert [item["status"] for item in commented["results"]] == [201, 201]
    moved = client.post(
        "/v1/tickets/bulk",
        json={
            "tickets": [first["id"], second["id"]],
            "action": {"type": "transfer", "department_code": "sawaco", "reason": "Thuộc cấp nước"},
        },
        headers=lan,
    ).json()
    assert [item["status"] for item in moved["results"]] == [200, 200]
    # Transferred away: lan no longer sees them.
    assert client.get(f"/v1/tickets/{first['id']}", headers=lan).status_code == 404


def test_bulk_of_more_than_100_tickets_is_422_and_officers_cannot_bulk_assign(client, lan):
    too_many = client.post(
        "/v1/tickets/bulk",
        json={
            "tickets": [f"T{n}" for n in range(101)],
            "action": {"type": "comment", "body": "x", "visibility": "internal"},
        },
        headers=lan,
    )
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "tickets"
    assign = client.post(
        "/v1/tickets/bulk",
        json={"tickets": ["T1"], "action": {"type": "assign", "assignee_username": "lan"}},
        headers=lan,
    )
    assert assign.status_code == 403


def test_bulk_refuses_a_ticket_listed_twice_and_writes_nothing(client, api_key, lan):
    (ticket,) = file_reports(client, api_key, {})
    for tickets in ([ticket["id"]] * 100, [ticket["tracking_code"], ticket["tracking_code"].lower()]):
        response = client.post(
            "/v1/tickets/bulk",
            json={"tickets": tickets, "action": {"type": "comment", "body": "Đã tiếp nhận", "visibility": "internal"}},
            headers=lan,
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "tickets"
    timeline = client.get(f"/v1/tickets/{ticket['id']}", headers=lan).json()["timeline"]
    assert not [event for event in timeline if event["code"] == "internal_note"]


def test_bulk_assign_without_assignee_username_is_422_and_explicit_null_unassigns(client, api_key, lan, dispatcher):
    (ticket,) = file_reports(client, api_key, {})
    client.post(f"/v1/tickets/{ticket['id']}/claim", headers=lan)
    missing = client.post(
        "/v1/tickets/bulk", json={"tickets": [ticket["id"]], "action": {"type": "assign"}}, headers=dispatcher
    )
    assert missing.status_code == 422, missing.text
    assert missing.json()["errors"][0]["field"] == "action.assign.assignee_username"
    assert client.get(f"/v1/tickets/{ticket['id']}", headers=lan).json()["assignee"]["username"] == "lan"
    cleared = client.post(
        "/v1/tickets/bulk",
        json={"tickets": [ticket["id"]], "action": {"type": "assign", "assignee_username": None}},
        headers=dispatcher,
    )
    assert cleared.status_code == 200 and cleared.json()["succeeded"] == 1
    assert client.get(f"/v1/tickets/{ticket['id']}", headers=lan).json()["assignee"] is None


def test_migration_backfills_the_folded_search_text_of_existing_reports(settings, tmp_path):
    """Reports filed before the search column existed are found without diacritics once it is migrated."""
    import asyncio
    import sqlite3
    import uuid

    import asyncpg
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from tests.conftest import PG_ADMIN_DSN, ROOT, _pg_admin

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["configure_logger"] = False
    before = ScriptDirectory.from_config(config).get_revision("5e7b1f3a9c42").down_revision
    insert = (
        "INSERT INTO reports (id, tracking_code, description, address, priority, status, channel, is_public,"
        " supporter_count, transfer_count, reopened_count, created_at, updated_at)"
        " VALUES ({id}, 'ABCD-2345', 'Ổ gà trên đường Nguyễn Huệ', 'Số 1 Lê Lợi', 'normal', 'assigned', 'app',"
        " TRUE, 0, 0, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    if settings.is_sqlite:
        path = tmp_path / "before.db"
        config.attributes["database_url"] = f"sqlite:///{path}"
        command.upgrade(config, before)
        with sqlite3.connect(path) as connection:
            connection.execute(insert.format(id=f"'{uuid.uuid4().hex}'"))
        command.upgrade(config, "head")
        with sqlite3.connect(path) as connection:
            (folded,) = connection.execute("SELECT search_text FROM reports").fetchone()
    else:
        name = f"intake_backfill_{uuid.uuid4().hex[:8]}"
        url = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        try:
            config.attributes["database_url"] = url
            command.upgrade(config, before)

            async def run(sql: str):
                connection = await asyncpg.connect(url)
                try:
                    return await connection.fetchval(sql)
                finally:
                    await connection.close()

            asyncio.run(run(insert.format(id="gen_random_uuid()")))
            command.upgrade(config, "head")
            folded = asyncio.run(run("SELECT search_text FROM reports"))
        finally:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    assert folded == "abcd-2345\no ga tren duong nguyen hue\nso 1 le loi"


def test_two_officers_claiming_one_ticket_at_once_leave_one_holder_and_one_refusal(client, api_key, lan, minh):
    # SQLite ignores FOR UPDATE: without a lock of its own both claims read "nobody" and both win.
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    tickets = file_reports(client, api_key, {}, {}, {}, {})
    for ticket in tickets:
        start = Barrier(2)

        def claim(headers, ticket_id=ticket["id"], start=start):
            start.wait()
            return client.post(f"/v1/tickets/{ticket_id}/claim", headers=headers)

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(claim, [lan, minh]))
        assert sorted(answer.status_code for answer in answers) == [200, 409], [a.text for a in answers]
        refused = next(answer for answer in answers if answer.status_code == 409)
        assert refused.json()["code"] == "already_claimed"
        timeline = client.get(f"/v1/tickets/{ticket['id']}", headers=lan).json()["timeline"]
        assert [event["code"] for event in timeline].count("assignee_changed") == 1
        winner = next(answer for answer in answers if answer.status_code == 200).json()["assignee"]["username"]
        assert client.get(f"/v1/tickets/{ticket['id']}", headers=lan).json()["assignee"]["username"] == winner


def test_two_changes_sent_at_once_with_one_etag_leave_one_change_and_one_412(client, api_key, lan, minh):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    for ticket in file_reports(client, api_key, {}, {}, {}):
        etag = client.get(f"/v1/tickets/{ticket['id']}", headers=lan).headers["ETag"]
        start = Barrier(2)

        def move(headers, ticket_id=ticket["id"], start=start):
            start.wait()
            return client.post(
                f"/v1/tickets/{ticket_id}/transitions",
                json={"to": "in_progress"},
                headers={**headers, "If-Match": etag},
            )

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(move, [lan, minh]))
        assert sorted(answer.status_code for answer in answers) == [200, 412], [a.text for a in answers]
        timeline = client.get(f"/v1/tickets/{ticket['id']}", headers=lan).json()["timeline"]
        moves = [event for event in timeline if event["code"] == "status_changed"]
        assert [event["actor"].startswith("staff:") for event in moves].count(True) == 1, moves


def test_assigning_with_an_empty_body_is_422_and_the_officer_keeps_the_ticket(client, api_key, lan, dispatcher):
    ticket = file_reports(client, api_key, {})[0]
    url = f"/v1/tickets/{ticket['id']}/assignee"
    assert client.post(url, json={"assignee_username": "lan"}, headers=dispatcher).status_code == 200
    forgotten = client.post(url, json={}, headers=dispatcher)
    assert forgotten.status_code == 422 and forgotten.json()["errors"][0]["field"] == "assignee_username"
    assert client.get(f"/v1/tickets/{ticket['id']}", headers=lan).json()["assignee"]["username"] == "lan"
    # Null, said out loud, still gives the ticket back to the department.
    assert client.post(url, json={"assignee_username": None}, headers=dispatcher).json()["assignee"] is None


def assignee_events(client, headers, ticket) -> int:
    timeline = client.get(f"/v1/tickets/{ticket['id']}", headers=headers).json()["timeline"]
    return sum(1 for event in timeline if event["code"] == "assignee_changed")


def test_assigning_whoever_already_holds_the_ticket_changes_nothing(client, api_key, lan, dispatcher):
    held, free = file_reports(client, api_key, {}, {})
    url = f"/v1/tickets/{held['id']}/assignee"
    # Nobody holds it, and nobody is asked for: the same ticket, the same ETag, no event.
    etag = client.get(f"/v1/tickets/{held['id']}", headers=dispatcher).headers["ETag"]
    nobody = client.post(url, json={"assignee_username": None}, headers={**dispatcher, "If-Match": etag})
    assert nobody.status_code == 200, nobody.text
    assert nobody.headers["ETag"] == etag and nobody.json()["assignee"] is None
    assert assignee_events(client, dispatcher, held) == 0

    given = client.post(url, json={"assignee_username": "lan"}, headers=dispatcher)
    assert given.headers["ETag"] != etag
    etag = given.headers["ETag"]
    again = client.post(url, json={"assignee_username": "lan"}, headers={**dispatcher, "If-Match": etag})
    assert again.status_code == 200, again.text
    assert again.headers["ETag"] == etag and again.json()["assignee"]["username"] == "lan"
    assert assignee_events(client, dispatcher, held) == 1
    # The same in bulk: only the ticket that changed hands gets a new ETag and an event.
    bulk = client.post(
        "/v1/tickets/bulk",
        json={"tickets": [held["id"], free["id"]], "action": {"type": "assign", "assignee_username": "lan"}},
        headers=dispatcher,
    ).json()
    assert [item["status"] for item in bulk["results"]] == [200, 200]
    assert bulk["results"][0]["etag"] == etag
    assert (assignee_events(client, dispatcher, held), assignee_events(client, dispatcher, free)) == (1, 1)
    # So the officer who read the ticket before those no-op assignments still writes without a 412.
    note = client.post(
        f"/v1/tickets/{held['id']}/comments",
        json={"body": "Đã kiểm tra", "visibility": "internal"},
        headers={**lan, "If-Match": etag},
    )
    assert note.status_code == 201, note.text


def test_bulk_refuses_one_ticket_named_by_its_code_and_by_its_id(client, api_key, lan, water_officer):
    (ticket,) = file_reports(client, api_key, {})
    response = client.post(
        "/v1/tickets/bulk",
        json={
            "tickets": [ticket["tracking_code"], ticket["id"]],
            "action": {"type": "comment", "body": "Đã tiếp nhận", "visibility": "internal"},
        },
        headers=lan,
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "tickets"
    timeline = client.get(f"/v1/tickets/{ticket['id']}", headers=lan).json()["timeline"]
    assert not [event for event in timeline if event["code"] == "internal_note"]
    # Someone who cannot see the ticket learns nothing from naming it twice: two 404s, as for any unknown ticket.
    hidden = client.post(
        "/v1/tickets/bulk",
        json={
            "tickets": [ticket["tracking_code"], ticket["id"]],
            "action": {"type": "comment", "body": "x", "visibility": "internal"},
        },
        headers=water_officer,
    )
    assert hidden.status_code == 200 and [item["status"] for item in hidden.json()["results"]] == [404, 404]
