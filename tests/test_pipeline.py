"""The worker pipeline end to end: reports come out classified, placed, routed and due-dated."""

from datetime import timedelta
from uuid import UUID

from sqlmodel import select

from service.models import Photo, Report, ReportEvent
from service.models.types import utcnow
from tests.conftest import in_app, run_worker, worker_context
from tests.factories import jpeg_with_gps, report_body

BEN_THANH = (10.7725, 106.6980)
THAO_DIEN = (10.8030, 106.7350)


def submit(client, api_key, **fields):
    response = client.post("/v1/reports", json=report_body(**fields), headers={"X-API-Key": api_key})
    assert response.status_code == 201, response.text
    return response.json()


def report_of(client, created) -> Report:
    return in_app(client, lambda s: s.get(Report, UUID(created["id"])))


def events_of(client, created) -> list[ReportEvent]:
    async def load(session):
        rows = await session.exec(
            select(ReportEvent).where(ReportEvent.report_id == UUID(created["id"])).order_by(ReportEvent.id)
        )
        return list(rows.all())

    return in_app(client, load)


def test_report_without_category_comes_out_classified_routed_and_due_dated(client, api_key):
    created = submit(client, api_key, description="Đèn đường trước chợ Bến Thành bị tắt ba đêm nay, tối om nguy hiểm")
    run_worker(client)
    report = report_of(client, created)
    assert report.status == "assigned"
    assert report.service_code == "street_lighting"
    assert report.category_source == "classifier"
    assert report.jurisdiction_code == "BEN-THANH"
    assert report.department_code == "chieu-sang"
    assert report.priority == "normal"
    assert report.acknowledge_due_at > report.created_at
    assert report.due_at > report.acknowledge_due_at
    types = [event.type for event in events_of(client, created)]
    assert types == ["received", "classified", "prioritised", "located", "routed", "sla_set", "status_changed"]

    page = client.get(f"/v1/reports/{created['tracking_code']}").json()
    assert page["status"] == "assigned"
    assert page["category"]["code"] == "street_lighting"
    assert page["department"]["code"] == "chieu-sang"
    assert page["due_at"] is not None
    # Internal decisions stay off the citizen's page.
    assert [(entry["code"], entry["status"]) for entry in page["timeline"]] == [
        ("received", None),
        ("status_changed", "assigned"),
    ]


def test_routing_event_records_rule_and_catalogue_version(client, api_key):
    created = submit(
        client,
        api_key,
        service_code="urban_order",
        description="Hàng rong lấn chiếm hết vỉa hè trước chợ, người đi bộ phải xuống lòng đường",
    )
    run_worker(client)
    report = report_of(client, created)
    assert report.category_source == "citizen"
    # Sidewalks are the ward People's Committee's business: its own rule beats the city-wide urban_order rule.
    assert report.department_code == "ubnd-phuong-ben-thanh"
    routed = next(event for event in events_of(client, created) if event.type == "routed")
    assert routed.data["rule"] == "urban_order @ BEN-THANH → ubnd-phuong-ben-thanh"
    assert routed.data["catalogue_version"].startswith("2026.12.1+")


def test_unclear_report_goes_to_a_human_dispatcher(client, api_key):
    created = submit(client, api_key, description="asdf qwer zxcv lorem ipsum dolor")
    run_worker(client)
    report = report_of(client, created)
    assert report.status == "needs_triage"
    assert report.department_code == "dispatch-1022"
    classified = next(event for event in events_of(client, created) if event.type == "classified")
    assert classified.data["triage"] is True
    assert classified.data["confidence"] < classified.data["threshold"]


def test_danger_makes_a_report_urgent_on_the_wall_clock(client, api_key):
    created = submit(
        client, api_key, description="Cây xanh bật gốc đổ đè lên người đi xe máy trên đường Lê Lợi, cần cứu gấp"
    )
    run_worker(client)
    report = report_of(client, created)
    assert report.priority == "urgent"
    assert report.sla_clock == "clock"
    assert report.due_at - report.created_at == timedelta(hours=4)


def test_near_identical_report_nearby_becomes_a_duplicate(client, api_key):
    first = submit(
        client, api_key, description="Ống nước bể phun nước lênh láng trước chợ Bến Thành", service_code="water_supply"
    )
    run_worker(client)
    # ~20 m away, two days of the window left: the same problem.
    second = submit(
        client,
        api_key,
        description="Bể ống nước gần chợ Bến Thành, nước chảy tràn ra đường",
        service_code="water_supply",
        lat=BEN_THANH[0] + 0.00018,
        lon=BEN_THANH[1],
    )
    # Same spot, another field: not a duplicate.
    third = submit(client, api_key, description="Rác thải chất đống bốc mùi trước chợ Bến Thành", service_code="waste_sanitation",
                   attributes={"waste_type": ["household"]})
    run_worker(client)
    original, duplicate, other = (report_of(client, r) for r in (first, second, third))
    assert duplicate.status == "duplicate"
    assert duplicate.duplicate_of_id == original.id
    assert original.supporter_count == 1
    assert other.status == "assigned"
    # A duplicate is placed in its ward too, so per-ward counts and filters include it.
    assert duplicate.jurisdiction_code == original.jurisdiction_code is not None
    page = client.get(f"/v1/reports/{second['tracking_code']}").json()
    assert page["duplicate_of"] == first["tracking_code"]
    assert page["original"]["status"] == "assigned"


def test_report_200_m_away_is_not_a_duplicate(client, api_key):
    submit(client, api_key, description="Ống nước bể phun nước lênh láng trước chợ", service_code="water_supply")
    run_worker(client)
    far = submit(
        client,
        api_key,
        description="Ống nước bể phun nước lênh láng trên đường",
        service_code="water_supply",
        lat=BEN_THANH[0] + 0.0018,
        lon=BEN_THANH[1],
    )
    run_worker(client)
    assert report_of(client, far).status == "assigned"


def test_running_the_job_twice_changes_nothing(client, api_key):
    from service.pipeline import service as pipeline

    created = submit(client, api_key, description="Đèn đường trước chợ Bến Thành bị tắt ba đêm nay")
    run_worker(client)
    before = [event.id for event in events_of(client, created)]
    ctx = worker_context(client)
    outcome = in_app(client, lambda s: pipeline.process(s, UUID(created["id"]), ctx["pipeline"]))
    assert outcome == "already-processed"
    assert [event.id for event in events_of(client, created)] == before


def test_photos_are_served_without_exif_after_processing(client, api_key):
    from PIL import Image
    import io

    files = [("photos", ("gps.jpg", jpeg_with_gps(10.7725, 106.6980), "image/jpeg"))]
    response = client.post(
        "/v1/reports", data=report_body(lat=None, lon=None), files=files, headers={"X-API-Key": api_key}
    )
    created = response.json()
    run_worker(client)
    photo = client.get(f"/v1/reports/{created['tracking_code']}").json()["photos"][0]
    assert photo["ready"] is True
    served = client.get(photo["url"].replace("http://testserver", ""))
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(served.content))
    assert not image.getexif()
    assert b"TestPhone" not in served.content
    assert client.get(photo["thumbnail_url"].replace("http://testserver", "")).status_code == 200
    report = report_of(client, created)
    assert report.location_source == "photo_exif"
    assert report.jurisdiction_code == "BEN-THANH"


def test_sweep_re_enqueues_reports_whose_hand_off_was_lost(client, api_key):
    from service.jobs import process_report_job_id
    from workers.reports import sweep_stale_reports

    created = submit(client, api_key)
    settings = client.app.state.settings
    # The hand-off is lost, as when Redis was down at intake: no queue entry, no job.
    client.portal.call(
        client.app.state.arq.delete, settings.queue_name, f"arq:job:{process_report_job_id(created['id'])}"
    )

    async def age(session):
        report = await session.get(Report, UUID(created["id"]))
        report.created_at = utcnow() - timedelta(minutes=5)
        session.add(report)

    in_app(client, age)
    assert client.portal.call(sweep_stale_reports, worker_context(client)) == 1
    assert client.portal.call(client.app.state.arq.zscore, settings.queue_name, process_report_job_id(created["id"]))
    run_worker(client)
    assert report_of(client, created).status == "assigned"


def test_sla_sweep_marks_at_risk_then_overdue_and_escalates(client, api_key):
    from workers.lifecycle import sweep_sla

    created = submit(client, api_key, description="Đèn đường trước chợ Bến Thành bị tắt ba đêm nay")
    run_worker(client)

    async def shift(session, at_risk_hours_ago, due_hours_ago):
        report = await session.get(Report, UUID(created["id"]))
        report.at_risk_at = utcnow() - timedelta(hours=at_risk_hours_ago)
        report.due_at = utcnow() - timedelta(hours=due_hours_ago)
        session.add(report)

    ctx = worker_context(client)
    in_app(client, lambda s: shift(s, 1, -5))
    assert client.portal.call(sweep_sla, ctx) == 1
    assert report_of(client, created).sla_state == "at_risk"
    assert client.portal.call(sweep_sla, ctx) == 0  # nothing new to say

    in_app(client, lambda s: shift(s, 2, 1))
    assert client.portal.call(sweep_sla, ctx) == 1
    report = report_of(client, created)
    assert report.sla_state == "overdue"
    assert report.escalated_to_department_code == "so-xay-dung"  # the lighting company's supervising unit
    types = [event.type for event in events_of(client, created)]
    assert types[-3:] == ["sla_at_risk", "sla_breached", "escalated"]


def test_catalogue_reload_takes_effect_without_restart(client, api_key, tmp_path):
    from service.catalogue import service as catalogue_service
    from tests.conftest import ROOT

    text = (ROOT / "service/catalogue/catalogue.yaml").read_text()
    changed = text.replace('version: "2026.12.1"', 'version: "2026.12.91"').replace(
        "{category: street_lighting, department: chieu-sang}", "{category: street_lighting, department: so-xay-dung}"
    )
    path = tmp_path / "catalogue.yaml"
    path.write_text(changed)
    catalogue, checksum = catalogue_service.read_file(path)
    try:
        in_app(client, lambda s: catalogue_service.load(s, catalogue=catalogue, checksum=checksum, source=str(path)))
        created = submit(client, api_key, service_code="street_lighting", description="Đèn đường hư cả tuần nay rồi")
        run_worker(client)
        assert report_of(client, created).department_code == "so-xay-dung"
        routed = next(event for event in events_of(client, created) if event.type == "routed")
        assert routed.data["catalogue_version"].startswith("2026.12.91+")
    finally:
        original, original_checksum = catalogue_service.read_file(ROOT / "service/catalogue/catalogue.yaml")
        in_app(
            client, lambda s: catalogue_service.load(s, catalogue=original, checksum=original_checksum, source="tests")
        )


def test_worker_that_cached_the_catalogue_sees_a_reload_on_its_next_report(client, api_key, tmp_path):
    # One long-lived worker context: the catalogue it read for the first report stays in its memory.
    from service.catalogue import service as catalogue_service
    from service.pipeline import service as pipeline
    from tests.conftest import ROOT

    ctx = worker_context(client)

    def process(created):
        return in_app(client, lambda s: pipeline.process(s, UUID(created["id"]), ctx["pipeline"]))

    first = submit(client, api_key, service_code="street_lighting", description="Đèn đường hư cả tuần nay rồi")
    assert process(first) == "assigned"
    assert report_of(client, first).department_code == "chieu-sang"

    original_path = ROOT / "service/catalogue/catalogue.yaml"
    changed = (
        original_path.read_text()
        .replace('version: "2026.12.1"', 'version: "2026.12.92"')
        .replace(
            "{category: street_lighting, department: chieu-sang}",
            "{category: street_lighting, department: so-xay-dung}",
        )
    )
    (tmp_path / "catalogue.yaml").write_text(changed)
    catalogue, checksum = catalogue_service.read_file(tmp_path / "catalogue.yaml")
    try:
        in_app(client, lambda s: catalogue_service.load(s, catalogue=catalogue, checksum=checksum, source="tests"))
        second = submit(
            client,
            api_key,
            service_code="street_lighting",
            description="Đèn đường tắt cả dãy",
            lat=THAO_DIEN[0],
            lon=THAO_DIEN[1],
        )
        assert process(second) == "assigned"
        assert report_of(client, second).department_code == "so-xay-dung"
    finally:
        original, original_checksum = catalogue_service.read_file(original_path)
        in_app(
            client, lambda s: catalogue_service.load(s, catalogue=original, checksum=original_checksum, source="tests")
        )


def test_cluster_of_near_identical_reports_processed_at_once_has_one_original(client, api_key):
    # Five people report the same burst pipe within a few metres; the worker runs them concurrently.
    created = [
        submit(
            client,
            api_key,
            service_code="water_supply",
            description=f"Bể ống nước trước chợ, người báo thứ {n}",
            lat=BEN_THANH[0] + n * 0.00002,
            lon=BEN_THANH[1],
        )
        for n in range(5)
    ]
    run_worker(client)
    reports = [report_of(client, c) for c in created]
    originals = [r for r in reports if r.status == "assigned"]
    assert len(originals) == 1
    assert all(r.duplicate_of_id == originals[0].id for r in reports if r is not originals[0])
    assert report_of(client, {"id": str(originals[0].id)}).supporter_count == 4
