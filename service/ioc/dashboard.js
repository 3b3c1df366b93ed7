// The IOC wall: fetches /v1/ioc/* and the ward outlines with the viewer's key and draws them. Every
// value goes into the page as text (textContent, SVG attributes): nothing from the API is ever parsed
// as HTML. Charts are drawn to the size of their panel, in the page's own rem, so they scale with it.
"use strict";

const REFRESH_MS = 30000;
const SVG = "http://www.w3.org/2000/svg";
const TIMEZONE = "Asia/Ho_Chi_Minh";
const CITY_OFFSET = "+07:00"; // Vietnam keeps one offset all year
const $ = (id) => document.getElementById(id);
let credential = null;
let latest = null; // the last answers, redrawn on resize without asking again
let outlines = null;
let resizeTimer = null;

// --- Vietnamese formats: 1.234 · 79,7 % · 2,5 giờ · 06/12 --------------------------------------------
const NUMBER = new Intl.NumberFormat("vi-VN");
const ONE_DECIMAL = new Intl.NumberFormat("vi-VN", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const missing = (value) => value === null || value === undefined;
function fmt(value) { return missing(value) ? "–" : NUMBER.format(value); }
function pct(value) { return missing(value) ? "–" : ONE_DECIMAL.format(value) + "\u00a0%"; }
function durationParts(seconds) {
  if (missing(seconds)) return ["–", ""];
  if (seconds < 3600) return [NUMBER.format(Math.round(seconds / 60)), "phút"];
  if (seconds < 172800) return [ONE_DECIMAL.format(seconds / 3600), "giờ"];
  return [ONE_DECIMAL.format(seconds / 86400), "ngày"];
}
function duration(seconds) { return durationParts(seconds).join(" ").trim(); }
const DAY_MONTH_PARTS = new Intl.DateTimeFormat("vi-VN", { timeZone: TIMEZONE, day: "2-digit", month: "2-digit" });
const DAY_MONTH = { format(date) { // 06/12, as Vietnamese write a day (some ICU builds give 06-12)
  const part = (type) => DAY_MONTH_PARTS.formatToParts(date).find((p) => p.type === type).value;
  return part("day") + "/" + part("month");
} };
const HOUR = new Intl.DateTimeFormat("vi-VN", { timeZone: TIMEZONE, hour: "2-digit", minute: "2-digit" });
const CLOCK = new Intl.DateTimeFormat("vi-VN", { timeZone: TIMEZONE, hour: "2-digit", minute: "2-digit" });
const LONG_DATE = new Intl.DateTimeFormat("vi-VN", { timeZone: TIMEZONE, weekday: "long", day: "2-digit", month: "2-digit", year: "numeric" });
const TIME = new Intl.DateTimeFormat("vi-VN", { timeZone: TIMEZONE, hour: "2-digit", minute: "2-digit", second: "2-digit" });

function tone(percent) {
  if (missing(percent)) return "";
  return percent >= 90 ? "good" : percent >= 75 ? "warn" : "bad";
}

// --- DOM helpers --------------------------------------------------------------------------------------
function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function rem() { return parseFloat(getComputedStyle(document.documentElement).fontSize) || 16; }
function sized(svg) {
  // The SVG fills its box; user units are CSS pixels, so text sized in rem by the stylesheet keeps its size.
  const width = Math.max(1, svg.clientWidth), height = Math.max(1, svg.clientHeight);
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  clear(svg);
  return { width, height };
}

// --- Credentials and filters -------------------------------------------------------------------------
function readFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const given = params.get("key") || params.get("token");
  if (given) {
    sessionStorage.setItem("ioc-credential", given);
    history.replaceState(null, "", location.pathname + location.search); // keep the key out of the address bar
  }
  return given || sessionStorage.getItem("ioc-credential");
}

function authHeaders() {
  if (!credential) return {};
  return credential.startsWith("ik_") ? { "X-API-Key": credential } : { "Authorization": "Bearer " + credential };
}

function filters() {
  const params = new URLSearchParams();
  const days = Number($("days").value);
  // 30 days is the API's own default window (30 city days, today included), cached for every viewer.
  // Longer or shorter windows also start at a city midnight, so they share the cache and the API's
  // daily rollup; the last 24 hours start on a whole minute.
  if (days === 1) params.set("from", new Date(Math.floor(Date.now() / 60000) * 60000 - 86400000).toISOString());
  else if (days !== 30) params.set("from", cityMidnight(days - 1));
  for (const name of ["department", "category"]) if ($(name).value) params.set(name, $(name).value);
  return params;
}

function cityMidnight(daysBack) {
  const today = new Intl.DateTimeFormat("en-CA", { timeZone: TIMEZONE }).format(new Date()); // YYYY-MM-DD
  const day = new Date(today + "T00:00:00Z");
  day.setUTCDate(day.getUTCDate() - daysBack);
  return day.toISOString().slice(0, 10) + "T00:00:00" + CITY_OFFSET;
}

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function getJSON(path, params) {
  // no-cache: the browser revalidates with If-None-Match and the API answers 304 when nothing changed.
  const query = params ? "?" + params.toString() : "";
  const response = await fetch(path + query, { headers: authHeaders(), cache: "no-cache" });
  if (!response.ok) {
    let detail = response.status + " " + response.statusText;
    try { const problem = await response.json(); detail = problem.title + (problem.detail ? " " + problem.detail : ""); } catch (e) { /* not JSON */ }
    throw new HttpError(response.status, detail);
  }
  return response.json();
}

// --- Header and tiles --------------------------------------------------------------------------------
function tickClock() {
  const now = new Date();
  $("clock-time").textContent = CLOCK.format(now);
  const date = LONG_DATE.format(now);
  $("clock-date").textContent = date.charAt(0).toUpperCase() + date.slice(1);
}

function drawScope(summary) {
  const department = $("department").selectedOptions[0];
  const category = $("category").selectedOptions[0];
  const from = new Date(summary.window.from), to = new Date(summary.window.to);
  const parts = [
    $("department").value ? department.textContent : "Toàn thành phố",
    $("category").value ? category.textContent : "mọi lĩnh vực",
    DAY_MONTH.format(from) + " – " + DAY_MONTH.format(new Date(to.getTime() - 1)),
  ];
  $("scope").textContent = "Phản ánh hiện trường · " + parts.join(" · ");
}

function tile(label, value, sub, toneName) {
  // value: the figure, or [figure, unit] with the unit set smaller beside it.
  const node = el("div", { class: "tile" + (toneName ? " " + toneName : "") });
  const [figure, unit] = Array.isArray(value) ? value : [value, ""];
  const shown = el("div", { class: "value" }, figure);
  if (unit) shown.append(el("span", { class: "unit" }, unit));
  node.append(el("div", { class: "label" }, label), shown, el("div", { class: "sub" }, sub || "\u00a0"));
  return node;
}
function percentParts(value) { return missing(value) ? ["–", ""] : [ONE_DECIMAL.format(value), "%"]; }

function drawTiles(s) {
  const tiles = $("tiles");
  clear(tiles);
  const c = s.counts;
  tiles.append(
    tile("Tiếp nhận", fmt(c.received), "trong khoảng đã chọn"),
    tile("Đã xử lý", fmt(c.resolved + c.closed), "đã giải quyết + đã đóng"),
    tile("Tồn đọng", fmt(s.backlog.open), "đang mở, hiện tại", s.backlog.open ? "warn" : "good"),
    tile("Quá hạn", fmt(s.backlog.overdue), "đang mở, quá hạn", s.backlog.overdue ? "bad" : "good"),
    tile("Đúng hạn (SLA)", percentParts(s.sla.compliance_pct), fmt(s.sla.on_time) + " / " + fmt(s.sla.measured) + " phản ánh", tone(s.sla.compliance_pct)),
    tile("Xác nhận", durationParts(s.time_to_acknowledge.median_seconds), "trung vị · p90 " + duration(s.time_to_acknowledge.p90_seconds)),
    tile("Xử lý xong", durationParts(s.time_to_resolve.median_seconds), "trung vị · p90 " + duration(s.time_to_resolve.p90_seconds)),
    tile("Trùng lặp", percentParts(s.duplicate_share_pct), fmt(c.duplicate) + " phản ánh"),
  );
}

function fillSelect(select, items, label) {
  const current = select.value;
  const first = select.options[0];
  clear(select);
  select.append(first);
  for (const item of items) if (item.code) select.append(el("option", { value: item.code }, label(item)));
  if (current && ![...select.options].some((option) => option.value === current)) select.append(el("option", { value: current }, current));
  select.value = current;
}

// --- The scorecard: as many rows as the panel holds, then one line for the rest -----------------------
function departmentRow(d) {
  const tr = el("tr");
  tr.append(
    el("td", { title: d.name || d.code || "" }, d.name || d.code || "(chưa phân công)"),
    el("td", {}, fmt(d.received)),
    el("td", {}, fmt(d.open)),
    el("td", { class: d.overdue ? "bad" : "" }, fmt(d.overdue)),
    el("td", { class: tone(d.on_time_pct) }, pct(d.on_time_pct)),
    el("td", { class: tone(d.acknowledge_on_time_pct), title: fmt(d.acknowledged_on_time) + " / " + fmt(d.acknowledge_measured) }, pct(d.acknowledge_on_time_pct)),
    el("td", {}, fmt(d.transfers)),
    el("td", {}, missing(d.average_rating) ? "–" : ONE_DECIMAL.format(d.average_rating) + " ★"),
  );
  return tr;
}

function fitRows(body, box, rows, columns, summarise) {
  // Drops rows from the end until the box shows everything it holds; one last line counts what was dropped.
  const hidden = [];
  const more = el("tr", { class: "more" });
  while (body.rows.length && box.scrollHeight > box.clientHeight + 1) {
    if (more.parentNode) body.removeChild(more);
    hidden.unshift(rows[body.rows.length - 1]);
    body.deleteRow(body.rows.length - 1);
    clear(more);
    more.append(el("td", { colspan: columns }, summarise(hidden)));
    body.append(more);
  }
  return hidden.length;
}

function othersLine(noun) {
  return (hidden) => "… và " + fmt(hidden.length) + " " + noun + " khác: " + fmt(hidden.reduce((sum, d) => sum + d.open, 0)) +
    " đang mở, " + fmt(hidden.reduce((sum, d) => sum + d.overdue, 0)) + " quá hạn";
}

function drawDepartments(s) {
  const body = $("departments"), box = $("departments-box"), wardTable = $("wards-table"), wardBody = $("wards");
  clear(body);
  clear(wardBody);
  wardTable.hidden = true;
  const rows = [...s.departments].sort((a, b) => b.open - a.open || b.overdue - a.overdue || b.received - a.received);
  for (const d of rows) body.append(departmentRow(d));
  if (fitRows(body, box, rows, 8, othersLine("đơn vị"))) return;
  // Room to spare (a single department, a small city): the wards of the same scope fill it.
  const wards = [...s.by_jurisdiction].sort((a, b) => b.open - a.open || b.received - a.received);
  if (!wards.length) return;
  wardTable.hidden = false;
  for (const w of wards) {
    const tr = el("tr");
    tr.append(el("td", { title: w.code || "" }, w.name || w.code || "(ngoài các phường)"), el("td", {}, fmt(w.received)),
      el("td", {}, fmt(w.resolved)), el("td", {}, fmt(w.open)), el("td", { class: w.overdue ? "bad" : "" }, fmt(w.overdue)));
    wardBody.append(tr);
  }
  fitRows(wardBody, box, wards, 5, othersLine("phường"));
  if (!wardBody.rows.length || (wardBody.rows.length === 1 && wardBody.rows[0].className === "more")) wardTable.hidden = true;
}

// --- Bar charts --------------------------------------------------------------------------------------
function drawBars(svg, items, options) {
  // items: [{label, value, title, color}] as vertical bars, a few gridlines and axis labels.
  const { width, height } = sized(svg);
  const r = rem();
  const pad = { l: options.axis ? 3.2 * r : 0.4 * r, r: 0.4 * r, t: (options.values ? 1.5 : 0.6) * r, b: 1.6 * r };
  const top = Math.max(1, ...items.map((item) => item.value));
  const tick = options.axis ? niceStep(top, 4) : top;
  const max = options.axis ? tick * Math.ceil(top / tick) : top;
  const plotW = width - pad.l - pad.r, plotH = height - pad.t - pad.b;
  const step = plotW / Math.max(1, items.length);
  if (options.axis) {
    for (let value = 0; value <= max; value += tick) {
      const y = pad.t + plotH * (1 - value / max);
      svg.append(el("svg:line", { class: "grid", x1: pad.l, x2: width - pad.r, y1: y, y2: y }));
      svg.append(el("svg:text", { x: pad.l - 0.4 * r, y: y + 0.3 * r, "text-anchor": "end" }, fmt(value)));
    }
  } else {
    svg.append(el("svg:line", { class: "grid", x1: pad.l, x2: width - pad.r, y1: pad.t + plotH, y2: pad.t + plotH }));
  }
  const every = Math.max(1, Math.ceil(items.length / Math.max(1, Math.floor(plotW / (options.labelWidth * r)))));
  items.forEach((item, index) => {
    const h = plotH * item.value / max;
    const x = pad.l + index * step;
    const bar = el("svg:rect", { x: x + step * 0.14, y: pad.t + plotH - h, width: Math.max(1, step * 0.72), height: h, rx: Math.min(3, step * 0.1), fill: item.color });
    bar.append(el("svg:title", {}, item.title));
    svg.append(bar);
    if (options.values) svg.append(el("svg:text", { class: "value", x: x + step / 2, y: pad.t + plotH - h - 0.35 * r, "text-anchor": "middle" }, fmt(item.value)));
    if (index % every === 0) {
      // Centred under its bar, but never past either end of the chart.
      const half = item.label.length * 0.3 * r;
      const labelX = Math.min(Math.max(x + step / 2, half), width - half);
      svg.append(el("svg:text", { x: labelX, y: height - 0.35 * r, "text-anchor": "middle" }, item.label));
    }
  });
}

function drawSeries(series) {
  const day = series.bucket === "day";
  const names = { received: "Tiếp nhận", resolved: "Đã xử lý", overdue: "Quá hạn" };
  const total = series.points.reduce((sum, point) => sum + point.count, 0);
  $("series-title").textContent = names[series.metric] + (day ? " theo ngày" : " theo giờ");
  $("series-title").append(el("small", {}, "tổng " + fmt(total)));
  const color = series.metric === "overdue" ? "#ff5d5a" : series.metric === "resolved" ? "#3ccf73" : "#4cb1ff";
  const format = day ? DAY_MONTH : HOUR;
  drawBars($("series"), series.points.map((point) => {
    const label = format.format(new Date(point.start));
    return { label, value: point.count, title: label + ": " + fmt(point.count), color };
  }), { axis: true, labelWidth: 3.6 });
}

function ageLabel(bucket) {
  if (bucket.max_days === null) return "> " + fmt(bucket.min_days) + " ngày";
  if (!bucket.min_days) return "< " + fmt(bucket.max_days) + " ngày";
  return fmt(bucket.min_days) + "–" + fmt(bucket.max_days) + " ngày";
}

function drawBacklog(s) {
  const colors = ["#3ccf73", "#9ccc65", "#f5b82e", "#ff8a3d", "#ff5d5a"];
  drawBars($("backlog"), s.backlog.by_age.map((bucket, index) => {
    const label = ageLabel(bucket);
    return { label, value: bucket.count, title: label + ": " + fmt(bucket.count) + " đang mở", color: colors[index] || "#4cb1ff" };
  }), { values: true, labelWidth: 4.5 });
}

// --- The map: ward outlines as the base, hexagons of report density over them -------------------------
const RAMP = ["#ffe08a", "#fdb44b", "#fb7d34", "#ec4a2c", "#c3112b"]; // yellow to red: more reports
// H3 cells: mean edge length (km) and area (km²) per resolution.
const CELL_EDGE_KM = { 5: 9.85, 6: 3.72, 7: 1.41, 8: 0.531, 9: 0.201 };
const CELL_KM2 = { 5: 252.9, 6: 36.1, 7: 5.16, 8: 0.737, 9: 0.105 };
const KM_PER_DEGREE = 111.195;
const MAX_WARD_LABELS = 24; // the busiest wards' names; a city of 168 wards keeps the rest on hover

function niceStep(max, classes) {
  const raw = Math.max(1, max / classes);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const multiples = power >= 10 ? [1, 2, 2.5, 5, 10] : [1, 2, 5, 10];
  return Math.round(multiples.map((m) => m * power).find((candidate) => candidate >= raw));
}

function roundNice(value) {
  // Two significant figures: 1, 12, 130, 1.300.
  if (value < 10) return Math.max(1, Math.round(value));
  const power = Math.pow(10, Math.floor(Math.log10(value)) - 1);
  return Math.round(value / power) * power;
}

function classBreaks(counts) {
  // Upper bounds of the colour classes. Quantiles, not equal steps: one very busy cell must not
  // paint every other cell the palest colour. The last class is everything above the last bound.
  const sorted = [...counts].sort((a, b) => a - b);
  if (!sorted.length) return [];
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const bounds = [];
  for (const q of [0.5, 0.75, 0.9, 0.97]) {
    const bound = roundNice(at(q));
    if (bound < sorted[sorted.length - 1] && (!bounds.length || bound > bounds[bounds.length - 1])) bounds.push(bound);
  }
  return bounds;
}

function projection(bbox, width, height, pad) {
  // Equirectangular around the map's middle latitude: east-west distances shrink by its cosine.
  const [minLon, minLat, maxLon, maxLat] = bbox;
  const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
  const spanX = Math.max(1e-9, (maxLon - minLon) * k), spanY = Math.max(1e-9, maxLat - minLat);
  const scale = Math.min((width - 2 * pad) / spanX, (height - 2 * pad) / spanY);
  const offsetX = (width - spanX * scale) / 2, offsetY = (height - spanY * scale) / 2;
  const project = ([lon, lat]) => [offsetX + (lon - minLon) * k * scale, offsetY + (maxLat - lat) * scale];
  project.pixelsPerKm = scale / KM_PER_DEGREE;
  return project;
}

function mapResolution() {
  // The finest H3 resolution whose cells are still at least a rem across on this screen.
  const svg = $("hotspots");
  if (!outlines || !outlines.bbox || !svg.clientWidth) return 8;
  const pixelsPerKm = projection(outlines.bbox, svg.clientWidth, svg.clientHeight, 0.8 * rem()).pixelsPerKm;
  for (const resolution of [9, 8, 7, 6]) if (Math.sqrt(3) * CELL_EDGE_KM[resolution] * pixelsPerKm >= 1.1 * rem()) return resolution;
  return 5;
}

function ringPath(ring, project) {
  return ring.map((point, index) => { const [x, y] = project(point); return (index ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1); }).join("") + "Z";
}
function polygons(geometry) { return geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates; }
function wardPath(ward, project) {
  return polygons(ward.geometry).map((polygon) => polygon.map((ring) => ringPath(ring, project)).join("")).join("");
}

function boundsOf(features) {
  let minLon = Infinity, minLat = Infinity, maxLon = -Infinity, maxLat = -Infinity;
  for (const f of features) for (const polygon of polygons(f.geometry)) for (const [lon, lat] of polygon[0]) {
    minLon = Math.min(minLon, lon); maxLon = Math.max(maxLon, lon); minLat = Math.min(minLat, lat); maxLat = Math.max(maxLat, lat);
  }
  return [minLon, minLat, maxLon, maxLat];
}

function inRing([x, y], ring) {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i], [xj, yj] = ring[j];
    if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}
function wardAt(point, wards) {
  for (const ward of wards) for (const polygon of polygons(ward.geometry)) {
    if (inRing(point, polygon[0]) && !polygon.slice(1).some((hole) => inRing(point, hole))) return ward;
  }
  return null;
}
function centre(ring) {
  const points = ring.slice(0, -1);
  return [points.reduce((sum, p) => sum + p[0], 0) / points.length, points.reduce((sum, p) => sum + p[1], 0) / points.length];
}

function categoryName(code, names) { return code ? names.get(code) || code : "chưa phân loại"; }

function drawMap(hotspots, summary) {
  const svg = $("hotspots");
  const { width, height } = sized(svg);
  const r = rem();
  const wards = outlines && outlines.features.length ? outlines.features : [];
  const cells = hotspots.features;
  const bbox = wards.length ? outlines.bbox : cells.length ? boundsOf(cells) : null;
  const legend = $("legend");
  clear(legend);
  if (!bbox) { $("map-hint").textContent = "chưa có ranh giới phường và vị trí phản ánh"; return; }
  const project = projection(bbox, width, height, 0.8 * r);
  const byWard = new Map(summary.by_jurisdiction.map((j) => [j.code, j]));
  const categoryNames = new Map(summary.by_category.map((c) => [c.code, c.name || c.code]));

  // 1. The wards, filled: the base, and each ward's name and figures on hover.
  const defs = el("svg:defs"), clip = el("svg:clipPath", { id: "ward-clip" });
  const base = el("svg:g", { class: "wards" }), edges = el("svg:g", { class: "ward-edges" });
  for (const ward of wards) {
    const d = wardPath(ward, project);
    const path = el("svg:path", { class: "ward", d, "fill-rule": "evenodd", "data-code": ward.properties.code });
    const figures = byWard.get(ward.properties.code);
    const detail = figures ? fmt(figures.received) + " phản ánh · " + fmt(figures.open) + " đang mở · " + fmt(figures.overdue) + " quá hạn" : "không có phản ánh trong khoảng này";
    path.append(el("svg:title", {}, ward.properties.name + "\n" + detail));
    base.append(path);
    clip.append(el("svg:path", { d, "fill-rule": "evenodd" }));
    edges.append(el("svg:path", { class: "ward-edge", d }));
  }
  defs.append(clip);
  svg.append(defs, base);

  // 2. Hexagons of report density over the wards, cut to their outlines; a cell on a boundary belongs
  //    to the ward holding its centre, else one holding a corner. A cell touching no ward (a report at
  //    the edge of the service area) is counted above the map, not drawn.
  const wardOfCell = (ring) => wardAt(centre(ring), wards) || ring.map((corner) => wardAt(corner, wards)).find(Boolean) || null;
  const wardOf = new Map(cells.map((f) => [f, wards.length ? wardOfCell(f.geometry.coordinates[0]) : null]));
  const inside = wards.length ? cells.filter((f) => wardOf.get(f)) : cells;
  const bounds = classBreaks(inside.map((f) => f.properties.count));
  // Fewer classes than colours (few cells) take the upper end of the ramp, so the busiest stays red.
  const colours = RAMP.slice(RAMP.length - bounds.length - 1);
  const classOf = (count) => { const index = bounds.findIndex((bound) => count <= bound); return index < 0 ? bounds.length : index; };
  const layer = el("svg:g", { class: "cells" });
  if (wards.length) layer.setAttribute("clip-path", "url(#ward-clip)");
  for (const f of [...inside].reverse()) {
    const ring = f.geometry.coordinates[0];
    const points = ring.map((point) => project(point).map((v) => v.toFixed(1)).join(",")).join(" ");
    const hex = el("svg:polygon", { class: "cell", points, fill: colours[classOf(f.properties.count)] });
    const ward = wardOf.get(f);
    const top = f.properties.top_categories.map((c) => categoryName(c.code, categoryNames) + " " + fmt(c.count)).join(" · ");
    hex.append(el("svg:title", {}, (ward ? ward.properties.name + ": " : "") + fmt(f.properties.count) + " phản ánh\n" + top));
    layer.append(hex);
  }
  svg.append(layer, edges);

  // 3. Ward names (and their open and overdue reports) where there is room; every ward keeps its name on hover.
  const labels = el("svg:g", { class: "labels" });
  const placed = [];
  const openIn = (ward) => (byWard.get(ward.properties.code) || { open: 0 }).open;
  const busiest = [...wards].sort((a, b) => openIn(b) - openIn(a));
  for (const ward of busiest) {
    if (!ward.properties.label_point || placed.length >= MAX_WARD_LABELS) continue;
    const [pointX, pointY] = project(ward.properties.label_point);
    const name = ward.properties.name, half = name.length * 0.27 * r;
    if (2 * half > width) continue;
    const x = Math.min(Math.max(pointX, half), width - half); // a ward at the edge keeps its whole name on screen
    // Where it lies, else a line lower or higher when a busier ward's name is already there.
    const boxAt = (y) => ({ y, left: x - half, right: x + half, top: y - r, bottom: y + 1.3 * r });
    const box = [0, 1.6, -1.6].map((shift) => boxAt(pointY + shift * r)).find((b) => b.top >= 0 && b.bottom <= height &&
      !placed.some((o) => b.left < o.right && b.right > o.left && b.top < o.bottom && b.bottom > o.top));
    if (!box) continue;
    placed.push(box);
    const y = box.y;
    const label = el("svg:text", { class: "ward-name", x: x.toFixed(1), y: y.toFixed(1), "text-anchor": "middle" }, name);
    const figures = byWard.get(ward.properties.code);
    if (figures) label.append(el("svg:tspan", { class: "ward-figures", x: x.toFixed(1), dy: "1.15em" }, fmt(figures.open) + " mở · " + fmt(figures.overdue) + " quá hạn"));
    labels.append(label);
  }
  svg.append(labels);

  const outside = cells.length - inside.length;
  $("map-hint").textContent = fmt(hotspots.total_reports) + " phản ánh có vị trí" + (outside ? " · " + fmt(outside) + " ô ngoài các phường" : "");
  if (inside.length) drawLegend(legend, bounds, colours, CELL_KM2[hotspots.resolution], wards.length);
}

function drawLegend(legend, bounds, colours, km2, wardCount) {
  const ramp = el("div", { class: "ramp" });
  ramp.append(el("span", { class: "title" }, "Phản ánh mỗi ô" + (km2 ? " (≈ " + (km2 < 1 ? ONE_DECIMAL.format(km2 * 100) + " ha" : ONE_DECIMAL.format(km2) + " km²") + ")" : "") + ":"));
  colours.forEach((colour, index) => {
    const low = index ? bounds[index - 1] + 1 : 1, high = index < bounds.length ? bounds[index] : null;
    const item = el("span", {});
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour; // through the CSSOM: the page's CSP allows no inline style
    const range = high === null ? (index ? "> " + fmt(low - 1) : "≥ 1") : low === high ? fmt(low) : fmt(low) + "–" + fmt(high);
    item.append(swatch, document.createTextNode(range));
    ramp.append(item);
  });
  const ward = el("span", {});
  ward.append(el("span", { class: "swatch ward" }), document.createTextNode("Ranh giới " + fmt(wardCount) + " phường"));
  legend.append(ramp, ward);
}

function drawCategories(summary) {
  const list = $("categories");
  clear(list);
  const rows = [...summary.by_category].sort((a, b) => b.received - a.received).slice(0, 6);
  const max = Math.max(1, ...rows.map((c) => c.received));
  for (const c of rows) {
    const item = el("li", {});
    const meter = el("span", { class: "meter" });
    const filled = el("span", {});
    filled.style.width = (100 * c.received / max).toFixed(1) + "%";
    meter.append(filled);
    item.append(el("span", { class: "name", title: c.code || "" }, c.name || c.code || "chưa phân loại"), el("span", { class: "count" }, fmt(c.received)), meter);
    list.append(item);
  }
}

// --- Refresh -----------------------------------------------------------------------------------------
function draw() {
  if (!latest) return;
  const { summary, series, hotspots } = latest;
  drawScope(summary);
  drawTiles(summary);
  drawBacklog(summary);
  drawSeries(series);
  drawCategories(summary);
  drawMap(hotspots, summary);
  drawDepartments(summary);
}

function showStatus(text, error) {
  $("status").className = "status" + (error ? " error" : "");
  $("status").textContent = text;
}

async function refresh() {
  if (!credential) { $("key-form").hidden = false; showStatus("Đang chờ khóa truy cập…"); return; }
  const params = filters();
  const seriesParams = new URLSearchParams(params);
  seriesParams.set("metric", $("metric").value);
  seriesParams.set("bucket", Number($("days").value) <= 2 ? "hour" : "day");
  try {
    // The outlines first: the map's scale decides how fine the hexagons can be.
    outlines = await getJSON("/v1/jurisdictions/outlines");
    const hotspotParams = new URLSearchParams(params);
    hotspotParams.set("resolution", String(mapResolution()));
    hotspotParams.set("limit", "2000");
    const [summary, series, hotspots] = await Promise.all([
      getJSON("/v1/ioc/summary", params), getJSON("/v1/ioc/timeseries", seriesParams), getJSON("/v1/ioc/hotspots", hotspotParams),
    ]);
    latest = { summary, series, hotspots };
    $("key-form").hidden = true;
    fillSelect($("department"), summary.departments, (d) => d.name || d.code);
    fillSelect($("category"), summary.by_category, (c) => c.name || c.code);
    draw();
    showStatus("Cập nhật " + TIME.format(new Date(summary.generated_at)) + " · tự làm mới mỗi 30 giây");
    document.body.dataset.ready = "true";
  } catch (error) {
    if (error.status === 401 || error.status === 403) $("key-form").hidden = false;
    showStatus("Không tải được dữ liệu: " + error.message, true);
  }
}

function start() {
  credential = readFragment();
  tickClock();
  setInterval(tickClock, 1000);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    credential = $("key").value.trim() || null;
    if (credential) sessionStorage.setItem("ioc-credential", credential);
    $("key").value = "";
    refresh();
  });
  for (const id of ["days", "department", "category", "metric"]) $(id).addEventListener("change", refresh);
  refresh();
  setInterval(refresh, REFRESH_MS);
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(draw, 200); });
}

document.addEventListener("DOMContentLoaded", start);
