"""Synthetic city history for demos and benchmarks: `intake seed --tickets N`.

The reports look like a year of a real 1022 desk: categories weighted as HCMC's published mix
(sidewalks, roads and rubbish first, flooding up in the rainy season), points inside the wards of
the loaded jurisdictions (the demo wards when none are loaded) clustered around a few hot spots,
a working-hours rhythm with an evening peak and quieter weekends, routing by the catalogue's own
rules, deadlines on the working-day calendar, departments that are more or less punctual, transfers
that make work late, ratings that follow punctuality, duplicates of nearby recent reports, rejections,
and a backlog that ages. Randomness is seeded: the same arguments give the same history.

Rows are written in batches: COPY on PostgreSQL, executemany on SQLite (about 1M rows in a few
minutes on PostgreSQL), then the IOC rollup is rebuilt. Timeline events are not generated: the IOC
reads the reports table only.
"""

import json
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import h3
import holidays
import numpy as np
import shapely
from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from service.catalogue.service import HOURS_PER_WORKING_DAY, read_file
from service.ioc import rollup
from service.jurisdictions.geo import DEMO_JURISDICTIONS_PATH, parse_feature_collection
from service.models import Jurisdiction, Report, RoutingRule
from service.models.types import utcnow
from service.pipeline.routing import choose_rule
from service.reports import search
from service.reports.codes import ALPHABET, CODE_LENGTH
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = Path(__file__).resolve().parent / "classify" / "corpus"
# Plain tables for bulk writes and reads; SQLModel sets __table__ on table models without declaring it.
REPORT_TABLE: Table = Report.__table__  # type: ignore[attr-defined]
JURISDICTION_TABLE: Table = Jurisdiction.__table__  # type: ignore[attr-defined]

# Share of reports per category, after HCMC's yearly 1022 reports (urban order, roads, waste lead).
CATEGORY_WEIGHTS = {
    "urban_order": 18,
    "road_traffic": 14,
    "waste_sanitation": 12,
    "environment_pollution": 10,
    "drainage_flooding": 8,
    "construction": 7,
    "street_lighting": 6,
    "trees_parks": 4,
    "water_supply": 4,
    "public_security": 4,
    "land_housing": 3,
    "administration": 3,
    "food_safety_market": 2,
    "other": 2.5,
    "health": 1.5,
    "education": 1,
}
# City time. Quiet nights, a morning rise, a lunch dip, and the evening peak when people are home.
HOUR_WEIGHTS = [
    0.6,
    0.3,
    0.2,
    0.2,
    0.3,
    0.8,
    2.0,
    3.6,
    4.8,
    5.2,
    5.0,
    4.2,
    3.0,
    3.4,
    4.3,
    4.6,
    4.5,
    4.6,
    5.2,
    6.6,
    7.4,
    6.6,
    4.4,
    1.9,
]
WEEKDAY_WEIGHTS = [1.0, 1.0, 0.98, 0.97, 0.93, 0.74, 0.68]  # Monday first
RAINY_MONTHS = {5, 6, 7, 8, 9, 10, 11}
CHANNEL_WEIGHTS = {"app": 55, "hotline": 20, "zalo": 12, "web": 10, "email": 2, "open311": 1}
DEFAULT_PRIORITY_FALLBACK = "normal"
SHARES = {
    "urgent": 0.03,
    "duplicate": 0.06,
    "rejected": 0.025,
    "triage": 0.05,
    "transfer1": 0.10,
    "transfer2": 0.025,
    "stalled": 0.012,
    "rated": 0.32,
    "private": 0.04,
}
RATING_ON_TIME = [0.04, 0.06, 0.12, 0.33, 0.45]  # P(1..5 stars)
RATING_LATE = [0.20, 0.23, 0.25, 0.20, 0.12]
POINTS_PER_WARD = 4000
DUPLICATE_RADIUS_DEG = 0.0003  # ~30 m
CODE_SPACE = len(ALPHABET) ** CODE_LENGTH
# Near the golden ratio of the space and not a multiple of 31: i -> i*stride mod space is one-to-one,
# and neighbouring indexes land far apart.
CODE_STRIDE = 525_218_824_069


@dataclass(frozen=True)
class Ward:
    code: str
    parent: str | None
    lats: np.ndarray
    lons: np.ndarray
    cells: list[str]


@dataclass(frozen=True)
class Plan:
    """Everything drawn once: catalogue, wards, departments' punctuality, texts."""

    categories: list[str]
    category_p: np.ndarray
    default_priority: dict[str, str]
    sla_hours: dict[
        tuple[str | None, str], tuple[float, float, str]
    ]  # (category|None, priority) -> (ack h, resolve h, clock)
    rules: list[RoutingRule]
    dispatch_department: str
    wards: list[Ward]
    ward_p: np.ndarray
    on_time: dict[str, float]
    texts: dict[str, list[str]]
    zone: ZoneInfo
    holidays: np.ndarray  # datetime64[D]


def tracking_code(index: int) -> str:
    """The index-th seeded code: distinct for distinct indexes, scattered over the code space."""
    value = (index * CODE_STRIDE + 7_777_777) % CODE_SPACE
    chars = []
    for _ in range(CODE_LENGTH):
        value, digit = divmod(value, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return f"{''.join(chars[:4])}-{''.join(chars[4:])}"


def _texts() -> dict[str, list[str]]:
    texts: dict[str, list[str]] = {}
    for path in sorted(CORPUS_DIR.glob("*.jsonl")):
        lines = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        texts[path.stem] = [line for line in lines if len(line) >= 10] or ["Phản ánh của người dân về hạ tầng đô thị."]
    return texts


def _ward_points(rng: np.random.Generator, geometry) -> tuple[np.ndarray, np.ndarray]:
    """Points inside the ward: 60% around a few hot spots (markets, schools, junctions), 40% spread out."""
    min_lon, min_lat, max_lon, max_lat = geometry.bounds
    shapely.prepare(geometry)

    def inside(lons, lats):
        keep = shapely.contains_xy(geometry, lons, lats)
        return lons[keep], lats[keep]

    spread_lon, spread_lat = inside(
        rng.uniform(min_lon, max_lon, POINTS_PER_WARD * 4), rng.uniform(min_lat, max_lat, POINTS_PER_WARD * 4)
    )
    centres = rng.integers(0, len(spread_lon), size=4)
    hot = int(POINTS_PER_WARD * 0.6)
    pick = rng.choice(centres, size=hot * 3)
    hot_lon, hot_lat = inside(
        spread_lon[pick] + rng.normal(0, 0.0012, hot * 3), spread_lat[pick] + rng.normal(0, 0.0012, hot * 3)
    )
    lons = np.concatenate([hot_lon[:hot], spread_lon[: POINTS_PER_WARD - min(hot, len(hot_lon))]])
    lats = np.concatenate([hot_lat[:hot], spread_lat[: POINTS_PER_WARD - min(hot, len(hot_lat))]])
    return lats, lons


def build_plan(
    catalogue_path: Path, jurisdiction_rows: list[Jurisdiction], rng: np.random.Generator, zone: ZoneInfo, years: range
) -> Plan:
    catalogue, _ = read_file(catalogue_path)
    categories = [c.code for c in catalogue.categories]
    weights = np.array([CATEGORY_WEIGHTS.get(code, 1.0) for code in categories])
    sla_hours: dict[tuple[str | None, str], tuple[float, float, str]] = {}
    for policy in catalogue.sla_policies:
        resolve = (
            policy.resolve_hours
            if policy.resolve_hours is not None
            else (policy.resolve_days or 0) * HOURS_PER_WORKING_DAY
        )
        sla_hours[(policy.category, policy.priority)] = (policy.acknowledge_hours, resolve, policy.clock)
    rules = [
        RoutingRule(
            id=index,
            category_code=r.category,
            jurisdiction_code=r.jurisdiction,
            department_code=r.department,
            catalogue_version=catalogue.version,
        )
        for index, r in enumerate(catalogue.routing_rules)
    ]
    catch_all = choose_rule(rules, None, [])
    if catch_all is None:
        raise ValueError("the catalogue needs a routing rule for reports of no category and no ward")
    dispatch = catch_all.department_code
    if jurisdiction_rows:
        shapes = [
            (row.code, row.parent_code, shapely.from_wkt(row.geometry_wkt))
            for row in jurisdiction_rows
            if row.level == "ward" and row.geometry_wkt
        ]
        shapes = shapes or [
            (row.code, row.parent_code, shapely.from_wkt(row.geometry_wkt))
            for row in jurisdiction_rows
            if row.geometry_wkt
        ]
    else:
        parsed = parse_feature_collection(
            json.loads(DEMO_JURISDICTIONS_PATH.read_text()),
            level="ward",
            code_field="code",
            name_field="name",
            parent_field="parent",
        )
        shapes = [(shape.code, shape.parent_code, shape.geometry) for shape in parsed]
    wards = []
    for code, parent, geometry in sorted(shapes, key=lambda s: s[0]):
        lats, lons = _ward_points(rng, geometry)
        cells = [h3.latlng_to_cell(float(lat), float(lon), 9) for lat, lon in zip(lats, lons, strict=True)]
        wards.append(Ward(code, parent, lats, lons, cells))
    ward_p = rng.uniform(0.5, 1.5, len(wards))
    departments = sorted({d.code for d in catalogue.departments})
    on_time = {code: float(rng.uniform(0.66, 0.95)) for code in departments}
    vn_holidays = sorted(day for year in years for day in holidays.country_holidays("VN", years=year))
    return Plan(
        categories=categories,
        category_p=weights / weights.sum(),
        default_priority={c.code: c.default_priority for c in catalogue.categories},
        sla_hours=sla_hours,
        rules=rules,
        dispatch_department=dispatch,
        wards=wards,
        ward_p=ward_p / ward_p.sum(),
        on_time=on_time,
        texts=_texts(),
        zone=zone,
        holidays=np.array(vn_holidays, dtype="datetime64[D]"),
    )


def created_times(rng: np.random.Generator, count: int, days: int, now: datetime, zone: ZoneInfo) -> np.ndarray:
    """Epoch seconds of `count` reports over the last `days` days, sorted: trend, weekdays, seasons, hours."""
    today = now.astimezone(zone).date()
    day_list = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    growth = np.linspace(0.8, 1.2, days)  # more residents use the app every month
    weekday = np.array([WEEKDAY_WEIGHTS[d.weekday()] for d in day_list])
    season = np.array([1.08 if d.month in RAINY_MONTHS else 0.95 for d in day_list])
    noise = rng.lognormal(0, 0.12, days)
    weights = growth * weekday * season * noise
    # Today is only partly over.
    elapsed_today = (now - datetime.combine(today, time(0), zone)).total_seconds()
    weights[-1] *= elapsed_today / 86400
    day_index = rng.choice(days, size=count, p=weights / weights.sum())
    day_start = np.array([datetime.combine(d, time(0), zone).timestamp() for d in day_list])
    hour_p = np.array(HOUR_WEIGHTS) / sum(HOUR_WEIGHTS)
    seconds = rng.choice(24, size=count, p=hour_p) * 3600 + rng.uniform(0, 3600, count)
    created = day_start[day_index] + seconds
    latest = now.timestamp() - 1
    late = created > latest
    created[late] = latest - rng.uniform(0, max(elapsed_today, 1), int(late.sum()))
    return np.sort(created)


def working_deadline(plan: Plan, created: np.ndarray, working_hours: float) -> np.ndarray:
    """Approximate working-day deadline: N working days later (weekends and VN holidays skipped), office time."""
    offset = _offset_seconds(plan.zone)
    local = created + offset
    days = np.floor(local / 86400).astype("int64")
    time_of_day = np.clip(local - days * 86400, 7.5 * 3600, 17 * 3600)
    whole, part = divmod(working_hours, HOURS_PER_WORKING_DAY)
    dates = np.busday_offset(days.astype("datetime64[D]"), int(whole), roll="forward", holidays=plan.holidays)
    seconds = dates.astype("int64") * 86400 + time_of_day + part * 3600
    return seconds - offset


def _offset_seconds(zone: ZoneInfo) -> float:
    # The city's offset (Vietnam has had no daylight saving since 1975: one offset fits all dates).
    return (zone.utcoffset(datetime(2026, 1, 1)) or timedelta()).total_seconds()


class Generator:
    """Draws batches of report rows (dicts keyed by column name), oldest first."""

    def __init__(self, plan: Plan, rng: np.random.Generator, now: datetime, first_index: int) -> None:
        self.plan, self.rng, self.now, self.next_index = plan, rng, now, first_index
        self.route_cache: dict[tuple[str, str], str] = {}
        self.channels = list(CHANNEL_WEIGHTS)
        channel_p = np.array(list(CHANNEL_WEIGHTS.values()), dtype=float)
        self.channel_p = channel_p / channel_p.sum()

    def department(self, category: str, ward: Ward) -> str:
        key = (category, ward.code)
        if key not in self.route_cache:
            rule = choose_rule(self.plan.rules, category, [ward.code] + ([ward.parent] if ward.parent else []))
            self.route_cache[key] = rule.department_code if rule else self.plan.dispatch_department
        return self.route_cache[key]

    def sla(self, category: str, priority: str) -> tuple[float, float, str]:
        hours = self.plan.sla_hours
        return hours.get((category, priority)) or hours.get((None, priority)) or (8.0, 40.0, "working")

    def batch(self, created: np.ndarray) -> list[dict]:
        plan, rng, n = self.plan, self.rng, len(created)
        now_ts = self.now.timestamp()
        category_idx = rng.choice(len(plan.categories), size=n, p=plan.category_p)
        local_days = np.floor((created + _offset_seconds(plan.zone)) / 86400).astype("int64").astype("datetime64[D]")
        months = local_days.astype("datetime64[M]").astype("int64") % 12 + 1
        rainy = np.isin(months, list(RAINY_MONTHS))
        if "drainage_flooding" in plan.categories:
            flood = plan.categories.index("drainage_flooding")
            category_idx[rainy & (rng.random(n) < 0.035)] = flood
        ward_idx = rng.choice(len(plan.wards), size=n, p=plan.ward_p)
        point_idx = rng.integers(0, POINTS_PER_WARD, n)
        channel_idx = rng.choice(len(self.channels), size=n, p=self.channel_p)
        draws = {
            name: rng.random(n)
            for name in (
                "urgent",
                "kind",
                "triage",
                "late",
                "transfer",
                "stalled",
                "rated",
                "open_status",
                "close",
                "private",
                "citizen",
            )
        }
        ack_hours = rng.lognormal(np.log(3.0), 1.1, n)
        early_fraction = rng.beta(2.2, 3.0, n)
        late_fraction = 1 + rng.exponential(0.45, n)
        stalled_factor = rng.uniform(4, 9, n)
        close_days = rng.uniform(0.5, 6, n)
        rating_on_time = rng.choice(5, size=n, p=RATING_ON_TIME) + 1
        rating_late = rng.choice(5, size=n, p=RATING_LATE) + 1
        text_pick = rng.integers(0, 1 << 30, n)
        processed_after = rng.uniform(0.5, 20, n)

        # Deadlines per (category, priority), vectorised per group.
        priorities = np.array(
            [
                "urgent"
                if draws["urgent"][i] < SHARES["urgent"]
                else plan.default_priority.get(plan.categories[c], DEFAULT_PRIORITY_FALLBACK)
                for i, c in enumerate(category_idx)
            ]
        )
        ack_due = np.empty(n)
        due = np.empty(n)
        clocks = np.empty(n, dtype=object)
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i in range(n):
            groups[(plan.categories[category_idx[i]], priorities[i])].append(i)
        for (category, priority), rows in groups.items():
            index = np.array(rows)
            ack_h, resolve_h, clock = self.sla(category, priority)
            if clock == "clock":
                ack_due[index] = created[index] + ack_h * 3600
                due[index] = created[index] + resolve_h * 3600
            else:
                ack_due[index] = working_deadline(plan, created[index], ack_h)
                due[index] = working_deadline(plan, created[index], resolve_h)
            clocks[index] = clock

        recent: dict[str, deque] = defaultdict(lambda: deque(maxlen=300))
        rows_out: list[dict] = []
        for i in range(n):
            rows_out.append(
                self._row(
                    i,
                    created[i],
                    now_ts,
                    category_idx,
                    ward_idx,
                    point_idx,
                    channel_idx,
                    priorities,
                    ack_due,
                    due,
                    clocks,
                    draws,
                    ack_hours,
                    early_fraction,
                    late_fraction,
                    stalled_factor,
                    close_days,
                    rating_on_time,
                    rating_late,
                    text_pick,
                    processed_after,
                    recent,
                )
            )
        return rows_out

    def _row(
        self,
        i,
        created_ts,
        now_ts,
        category_idx,
        ward_idx,
        point_idx,
        channel_idx,
        priorities,
        ack_due,
        due,
        clocks,
        draws,
        ack_hours,
        early_fraction,
        late_fraction,
        stalled_factor,
        close_days,
        rating_on_time,
        rating_late,
        text_pick,
        processed_after,
        recent,
    ) -> dict:
        plan = self.plan
        at = lambda seconds: datetime.fromtimestamp(seconds, UTC)  # noqa: E731
        category = plan.categories[category_idx[i]]
        ward = plan.wards[ward_idx[i]]
        lat, lon, cell = float(ward.lats[point_idx[i]]), float(ward.lons[point_idx[i]]), ward.cells[point_idx[i]]
        texts = plan.texts.get(category) or plan.texts.get("other") or ["Phản ánh của người dân."]
        citizen_chose = draws["citizen"][i] < 0.6
        row = {
            "id": uuid.uuid4(),
            "tracking_code": tracking_code(self.next_index),
            "description": texts[text_pick[i] % len(texts)],
            "requested_service_code": category if citizen_chose else None,
            "service_code": category,
            "classification_confidence": None if citizen_chose else round(0.5 + 0.5 * early_fraction[i], 4),
            "category_source": "citizen" if citizen_chose else "classifier",
            "priority": str(priorities[i]),
            "channel": self.channels[channel_idx[i]],
            "is_public": bool(draws["private"][i] >= SHARES["private"]),
            "lat": lat,
            "lon": lon,
            "h3_cell": cell,
            "location_source": "device",
            "jurisdiction_code": ward.code,
            "department_code": self.department(category, ward),
            "supporter_count": 0,
            "transfer_count": 0,
            "reopened_count": 0,
            "created_at": at(created_ts),
        }
        # COPY skips column defaults: the folded search text is written here, as the default would.
        row["search_text"] = search.search_text(row["tracking_code"], None, row["description"], None)
        self.next_index += 1
        age = now_ts - created_ts
        if age < 60 and draws["kind"][i] < 0.5:
            # Just in: the worker has not classified and routed it yet.
            row.update(
                status="received",
                service_code=row["requested_service_code"],
                department_code=None,
                updated_at=row["created_at"],
                classification_confidence=None,
            )
            return row
        processed = created_ts + processed_after[i]
        row.update(processed_at=at(processed), updated_at=at(processed))
        kind = draws["kind"][i]
        candidates = recent[category]
        if kind < SHARES["duplicate"] and candidates:
            original = candidates[int(text_pick[i]) % len(candidates)]
            original["supporter_count"] += 1
            dlat, dlon = self.rng.uniform(-DUPLICATE_RADIUS_DEG, DUPLICATE_RADIUS_DEG, 2)
            lat, lon = original["lat"] + float(dlat), original["lon"] + float(dlon)
            row.update(
                status="duplicate",
                duplicate_of_id=original["id"],
                lat=lat,
                lon=lon,
                h3_cell=h3.latlng_to_cell(lat, lon, 9),
                jurisdiction_code=original["jurisdiction_code"],
                department_code=original["department_code"],
            )
            return row
        acknowledged = created_ts + ack_hours[i] * 3600
        row.update(
            acknowledge_due_at=at(ack_due[i]),
            due_at=at(due[i]),
            sla_clock=clocks[i],
            sla_started_at=row["created_at"],
            at_risk_at=at(created_ts + 0.75 * (due[i] - created_ts)),
        )
        if draws["triage"][i] < SHARES["triage"] and acknowledged > now_ts:
            row.update(
                status="needs_triage", department_code=plan.dispatch_department, sla_state=self._state(now_ts, row)
            )
            return row
        if acknowledged <= now_ts:
            row.update(acknowledged_at=at(acknowledged), updated_at=at(acknowledged))
        if SHARES["duplicate"] <= kind < SHARES["duplicate"] + SHARES["rejected"] and acknowledged <= now_ts:
            closed = acknowledged + close_days[i] * 3600 * 4
            row.update(
                status="rejected",
                closed_at=at(min(closed, now_ts)),
                updated_at=at(min(closed, now_ts)),
                rejection_reason="Không thuộc thẩm quyền giải quyết / Outside the city's remit",
                sla_state="on_track",
            )
            return row
        transfers = (
            2 if draws["transfer"][i] < SHARES["transfer2"] else 1 if draws["transfer"][i] < SHARES["transfer1"] else 0
        )
        row["transfer_count"] = transfers
        punctual = plan.on_time.get(row["department_code"], 0.85) - 0.2 * transfers
        allowed = due[i] - created_ts
        late = draws["late"][i] > punctual
        duration = allowed * (late_fraction[i] if late else early_fraction[i])
        if draws["stalled"][i] < SHARES["stalled"]:
            duration *= stalled_factor[i]
            late = True
        resolved = max(created_ts + duration, acknowledged + 600)
        if resolved > now_ts:
            row["status"] = self._open_status(draws["open_status"][i], acknowledged <= now_ts)
            if row["status"] == "on_hold":
                row["on_hold_since"] = at(acknowledged + 0.5 * (now_ts - acknowledged))
            if row["status"] == "reopened":
                row["reopened_count"] = 1
            row["sla_state"] = self._state(now_ts, row)
            candidates.append(row)
            return row
        row.update(
            resolved_at=at(resolved),
            updated_at=at(resolved),
            status="resolved",
            sla_state="overdue" if resolved > due[i] else "on_track",
        )
        closed = resolved + close_days[i] * 86400
        if closed <= now_ts and draws["close"][i] < 0.9:
            row.update(status="closed", closed_at=at(closed), updated_at=at(closed))
        if draws["rated"][i] < SHARES["rated"] and resolved + 3600 <= now_ts:
            stars = rating_late[i] if resolved > due[i] else rating_on_time[i]
            row.update(citizen_rating=int(stars), rated_at=at(min(resolved + close_days[i] * 3600 * 6, now_ts)))
        candidates.append(row)
        return row

    @staticmethod
    def _open_status(draw: float, acknowledged: bool) -> str:
        if not acknowledged:
            return "assigned"
        if draw < 0.66:
            return "in_progress"
        if draw < 0.78:
            return "assigned"
        if draw < 0.92:
            return "on_hold"
        return "reopened"

    @staticmethod
    def _state(now_ts: float, row: dict) -> str:
        if row["due_at"].timestamp() <= now_ts:
            return "overdue"
        return "at_risk" if row["at_risk_at"].timestamp() <= now_ts else "on_track"


def _columns_and_records(rows: list[dict]) -> tuple[list[str], list[tuple]]:
    """The columns any row sets (and every NOT NULL one), and each row as a tuple in that order.

    What a row leaves out gets the column's default, so columns other domains add later keep working.
    """
    given = set().union(*(row.keys() for row in rows))
    columns = [column for column in REPORT_TABLE.columns if column.name in given or not column.nullable]
    defaults = {
        column.name: column.default.arg if isinstance(column.default, ScalarElementColumnDefault) else None
        for column in columns
    }
    names = [column.name for column in columns]
    return names, [tuple(row.get(name, defaults[name]) for name in names) for row in rows]


async def _write(engine: AsyncEngine, rows: list[dict], postgresql: bool) -> None:
    names, records = _columns_and_records(rows)
    if postgresql:
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            assert raw.driver_connection is not None  # asyncpg's connection, open while `connection` is
            await raw.driver_connection.copy_records_to_table(Report.__tablename__, records=records, columns=names)
        return
    async with engine.begin() as connection:
        await connection.execute(insert(REPORT_TABLE), [dict(zip(names, values, strict=True)) for values in records])


async def seed(
    settings: Settings,
    *,
    tickets: int,
    days: int = 365,
    random_seed: int = 1022,
    batch_size: int = 20_000,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Insert `tickets` synthetic reports covering the last `days` days; returns how many were written."""
    from service.db import create_engine, session_factory

    if tickets <= 0:
        return 0
    engine = create_engine(settings)
    postgresql = not settings.is_sqlite
    try:
        async with engine.connect() as connection:
            existing = (await connection.execute(select(func.count()).select_from(REPORT_TABLE))).scalar_one()
            jurisdiction_rows = [
                Jurisdiction(**row._mapping) for row in (await connection.execute(select(JURISDICTION_TABLE))).all()
            ]
        now = utcnow()
        zone = ZoneInfo(settings.sla_timezone)
        rng = np.random.default_rng(random_seed + existing)
        catalogue_path = (
            settings.catalogue_path if Path(settings.catalogue_path).exists() else ROOT / settings.catalogue_path
        )
        first_year = (now - timedelta(days=days)).year
        plan = build_plan(catalogue_path, jurisdiction_rows, rng, zone, range(first_year, now.year + 2))
        created = created_times(rng, tickets, days, now, zone)
        generator = Generator(plan, rng, now, first_index=existing)
        written = 0
        for start in range(0, tickets, batch_size):
            rows = generator.batch(created[start : start + batch_size])
            await _write(engine, rows, postgresql)
            written += len(rows)
            if on_progress:
                on_progress(len(rows))
        async with session_factory(engine)() as session:
            await rollup.rebuild(session, zone)
            await session.commit()
        if postgresql:
            # Fresh statistics and visibility map: the planner and index-only scans need both.
            async with engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(text("VACUUM (ANALYZE) reports, ioc_daily_rollup"))
        return written
    finally:
        await engine.dispose()
