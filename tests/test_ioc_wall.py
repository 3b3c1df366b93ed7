"""The IOC wall as an operations centre sees it: a real `intake serve` with seeded city history, the page
opened in Debian's headless Chromium at 1920×1080 and at 3840×2160, a screenshot of each, and what a
person in the room would notice: one screen, nothing cut off, the ward map, Vietnamese figures.

Chromium comes from Debian (`scripts/ensure_chromium.sh`, run by `make test`); Playwright only drives
it and never downloads a browser. Screenshots go to var/screenshots/ (their paths are printed).
"""

import os
import re
import shutil
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from service.auth import api_keys
from service.ioc.service import database_namespace
from service.models import Jurisdiction
from tests.conftest import CATALOGUE_TABLES, ROOT, run_in_session
from tests.processes import live_api

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENS = {"1080p": (1920, 1080), "4k": (3840, 2160)}
SCREENSHOTS = ROOT / "var" / "screenshots"
PANELS = ("#series-panel", "#backlog-panel", "#departments-panel", "#map-panel")

# Runs in the page once it has drawn: what a test needs to know about the layout, the map and the text.
MEASURE = """(panelIds) => {
  const vw = innerWidth, vh = innerHeight;
  const box = (node) => { const r = node.getBoundingClientRect(); return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height }; };
  const name = (node) => node.tagName.toLowerCase() + (node.id ? "#" + node.id : "") + (node.getAttribute("class") ? "." + node.getAttribute("class").split(" ").join(".") : "");
  const outside = [];
  for (const node of document.querySelectorAll("body *")) {
    if (node.closest("[hidden], defs, title, script, option")) continue;
    const r = node.getBoundingClientRect();
    if (!r.width && !r.height) continue;
    if (r.left < -0.5 || r.top < -0.5 || r.right > vw + 0.5 || r.bottom > vh + 0.5) outside.push(name(node) + " " + JSON.stringify(box(node)));
  }
  const size = (selector) => parseFloat(getComputedStyle(document.querySelector(selector)).fontSize);
  return {
    viewport: [vw, vh],
    scroll: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
    outside,
    panels: Object.fromEntries(panelIds.map((id) => [id, box(document.querySelector(id))])),
    tiles: [...document.querySelectorAll("#tiles .tile")].map(box),
    header: box(document.querySelector("header")),
    map: box(document.querySelector("#hotspots")),
    wards: [...document.querySelectorAll("#hotspots path.ward")].map((path) => ({ code: path.dataset.code, title: path.querySelector("title") ? path.querySelector("title").textContent : null })),
    cells: [...document.querySelectorAll("#hotspots polygon.cell")].map((cell) => cell.querySelector("title").textContent),
    labels: [...document.querySelectorAll("#hotspots text.ward-name")].map((label) => label.firstChild.textContent),
    legend: document.querySelector("#legend").innerText,
    departmentRows: document.querySelectorAll("#departments tr").length,
    rootFont: size("html"),
    tileFont: size("#tiles .tile .value"),
    tableFont: size("#departments td"),
    text: document.body.innerText,
    status: document.querySelector("#status").textContent,
    keyFormHidden: document.querySelector("#key-form").hidden,
  };
}"""


def _empty_reports(settings) -> None:
    async def empty(session) -> None:
        from service.db import metadata

        for table in reversed(metadata.sorted_tables):
            if table.name not in CATALOGUE_TABLES:
                await session.exec(text(f"DELETE FROM {table.name}"))

    run_in_session(settings, empty)
    connection = redis.Redis.from_url(settings.redis_url)
    try:
        # This database's entries only: other pytest-xdist workers share the Redis and keep their own.
        for key in connection.scan_iter(match=f"ioc:{database_namespace(settings.database_url)}:*"):
            connection.delete(key)
    finally:
        connection.close()


@pytest.fixture(scope="module")
def wall(settings, tmp_path_factory) -> dict:
    """Seeded history behind a real server, the wall opened at each screen size: measurements and screenshots."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        pytest.skip(f"{CHROMIUM} is missing (make test installs Debian's chromium: scripts/ensure_chromium.sh)")
    import asyncio

    from service.seed import seed

    _empty_reports(settings)
    asyncio.run(seed(settings, tickets=3000, days=60, batch_size=1000))

    async def viewer_key(session):
        return (await api_keys.create(session, name="IOC wall", role="ioc_viewer")).key

    async def ward_names(session):
        from sqlmodel import select

        rows = (await session.exec(select(Jurisdiction).where(Jurisdiction.level == "ward"))).all()
        return {row.code: row.name for row in rows}

    key = run_in_session(settings, viewer_key)
    wards = run_in_session(settings, ward_names)
    backend = "sqlite" if settings.is_sqlite else "postgresql"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    workdir = tmp_path_factory.mktemp("wall")
    seen: dict = {"wards": wards, "screens": {}}
    with live_api(settings, workdir) as base, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            for screen, (width, height) in SCREENS.items():
                page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
                requests, problems = [], []
                page.on("request", lambda request, requests=requests: requests.append(request.url))
                page.on(
                    "console",
                    lambda message, problems=problems: message.type == "error" and problems.append(message.text),
                )
                page.on("pageerror", lambda error, problems=problems: problems.append(str(error)))
                page.goto(f"{base}/ioc#key={key}")
                page.wait_for_selector("body[data-ready=true]", state="attached", timeout=30_000)
                path = SCREENSHOTS / f"ioc-wall-{backend}-{screen}.png"
                page.screenshot(path=str(path))
                print(f"IOC wall at {width}×{height}: {path}")
                seen["screens"][screen] = {
                    **page.evaluate(MEASURE, list(PANELS)),
                    "screenshot": path,
                    "requests": requests,
                    "problems": problems,
                    "base": base,
                }
                page.close()
        finally:
            browser.close()
    return seen


@pytest.mark.parametrize("screen", SCREENS)
def test_wall_is_one_full_screen_with_nothing_cut_off(wall, screen):
    seen = wall["screens"][screen]
    width, height = SCREENS[screen]
    assert seen["screenshot"].stat().st_size > 50_000
    assert seen["viewport"] == [width, height]
    assert seen["scroll"] == [width, height], "the page scrolls: something runs off the screen"
    assert seen["outside"] == [], "elements past the edge of the screen"
    assert seen["keyFormHidden"] and seen["status"].startswith("Cập nhật"), seen["status"]
    # Nothing left half-empty: the header, eight tiles and four panels reach the bottom of the screen.
    panels = seen["panels"]
    bottom = max(panel["bottom"] for panel in panels.values())
    assert bottom >= 0.97 * height
    assert (bottom - seen["header"]["top"]) >= 0.95 * height
    assert len(seen["tiles"]) == 8
    covered = sum(p["width"] * p["height"] for p in [*panels.values(), *seen["tiles"]])
    assert covered >= 0.75 * width * height
    assert panels["#map-panel"]["height"] >= 0.6 * height and panels["#map-panel"]["width"] >= 0.35 * width
    assert seen["map"]["width"] * seen["map"]["height"] >= 0.15 * width * height
    # The scorecard shows as many departments as fit, and says how many more there are.
    assert seen["departmentRows"] >= 6


def test_wall_text_grows_with_the_screen(wall):
    hd, uhd = wall["screens"]["1080p"], wall["screens"]["4k"]
    # Readable across a room: the figures on the tiles are large at 1080p and twice that at 4K.
    assert hd["tileFont"] >= 36
    assert hd["tableFont"] >= 14
    for size in ("rootFont", "tileFont", "tableFont"):
        assert uhd[size] >= 1.8 * hd[size], size
    # The same layout, scaled: each panel keeps its share of the screen.
    for panel in PANELS:
        assert abs(uhd["panels"][panel]["width"] / 3840 - hd["panels"][panel]["width"] / 1920) < 0.02


@pytest.mark.parametrize("screen", SCREENS)
def test_wall_map_draws_every_imported_ward_with_its_name(wall, screen):
    seen = wall["screens"][screen]
    wards = wall["wards"]
    assert len(wards) == 9
    drawn = {ward["code"]: ward["title"] for ward in seen["wards"]}
    assert sorted(drawn) == sorted(wards), "one path per ward"
    for code, title in drawn.items():
        assert title.startswith(wards[code] + "\n"), title  # the name on hover, then its figures
        assert re.search(r"\d+ phản ánh · \d+ đang mở · \d+ quá hạn", title), title
    assert set(seen["labels"]) & set(wards.values()), "ward names written on the map"
    # Hexagons of density over the wards, each naming its ward and its categories in Vietnamese.
    assert len(seen["cells"]) >= 20
    categories = ("Trật tự đô thị", "Giao thông", "Rác thải & vệ sinh", "Thoát nước & ngập", "Chiếu sáng công cộng")
    assert any(name in cell for cell in seen["cells"] for name in categories)
    assert not any(re.search(r"\b[a-z]+_[a-z_]+\b", cell) for cell in seen["cells"]), "a raw category code"
    assert any(cell.startswith(tuple(wards.values())) for cell in seen["cells"])
    assert "Phản ánh mỗi ô" in seen["legend"] and "Ranh giới 9 phường" in seen["legend"]


@pytest.mark.parametrize("screen", SCREENS)
def test_wall_figures_are_in_vietnamese_formats(wall, screen):
    page_text = wall["screens"][screen]["text"]
    assert re.search(r"\b\d{1,3}(\.\d{3})+\b", page_text), "a thousands figure such as 1.234"
    assert re.search(r"\b\d{1,3},\d\s%", page_text), "a percentage such as 79,7 %"
    assert re.search(r"\b\d+,\d\s(giờ|ngày)\b", page_text), "a duration such as 2,5 giờ"
    assert not re.search(r"\b\d{1,3}(,\d{3})+\b", page_text), "an English thousands separator"
    assert not re.search(r"\b\d+\.\d\s?%", page_text), "an English decimal point"
    assert re.search(r"\b\d{2}/\d{2}\b", page_text), "a day written 06/12"


@pytest.mark.parametrize("screen", SCREENS)
def test_wall_loads_nothing_from_outside_hosts(wall, screen):
    seen = wall["screens"][screen]
    assert seen["requests"] and all(url.startswith(seen["base"] + "/") for url in seen["requests"]), seen["requests"]
    assert seen["problems"] == []  # no CSP violation, no script error, no failed request


def test_wall_page_and_its_files_allow_no_other_host_and_no_inline_code(client):
    for path, kind in (
        ("/ioc", "text/html"),
        ("/ioc/dashboard.js", "text/javascript"),
        ("/ioc/dashboard.css", "text/css"),
    ):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "http" not in policy and "unsafe-inline" not in policy, policy
    page = client.get("/ioc").text
    assert "<style" not in page and " style=" not in page and "<script>" not in page
    assert "http://" not in page and "https://" not in page
