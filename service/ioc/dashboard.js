// The IOC wall: fetches /v1/ioc/* with the viewer's key and draws them. Every value goes into the
// page as text (textContent, SVG attributes): nothing from the API is ever parsed as HTML.
"use strict";

const REFRESH_MS = 30000;
const SVG = "http://www.w3.org/2000/svg";
const TIMEZONE = "Asia/Ho_Chi_Minh";
const CITY_OFFSET = "+07:00"; // Vietnam keeps one offset all year
const $ = (id) => document.getElementById(id);
let credential = null;
let resizeTimer = null;

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

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

async function getJSON(path, params) {
  // no-cache: the browser revalidates with If-None-Match and the API answers 304 when nothing changed.
  const response = await fetch(path + "?" + params.toString(), { headers: authHeaders(), cache: "no-cache" });
  if (!response.ok) {
    let detail = response.status + " " + response.statusText;
    try { const problem = await response.json(); detail = problem.title + (problem.detail ? " " + problem.detail : ""); } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return response.json();
}

const number = new Intl.NumberFormat("vi-VN");
function fmt(value) { return value === null || value === undefined ? "–" : number.format(value); }
function pct(value) { return value === null || value === undefined ? "–" : value.toFixed(1) + " %"; }
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 3600) return Math.round(seconds / 60) + " phút";
  if (seconds < 172800) return (seconds / 3600).toFixed(1) + " giờ";
  return (seconds / 86400).toFixed(1) + " ngày";
}

function tile(label, value, sub, tone) {
  const node = el("div", { class: "tile" + (tone ? " " + tone : "") });
  node.append(el("div", { class: "label" }, label), el("div", { class: "value" }, value), el("div", { class: "sub" }, sub || ""));
  return node;
}

function drawTiles(s) {
  const tiles = $("tiles");
  clear(tiles);
  const c = s.counts;
  const slaTone = s.sla.compliance_pct === null ? "" : s.sla.compliance_pct >= 90 ? "good" : s.sla.compliance_pct >= 75 ? "warn" : "bad";
  tiles.append(
    tile("Tiếp nhận", fmt(c.received), "trong khoảng đã chọn"),
    tile("Đã xử lý", fmt(c.resolved + c.closed), "đã giải quyết + đã đóng"),
    tile("Tồn đọng", fmt(s.backlog.open), "đang mở, hiện tại"),
    tile("Quá hạn", fmt(s.backlog.overdue), "đang mở, quá hạn", s.backlog.overdue ? "bad" : "good"),
    tile("Đúng hạn (SLA)", pct(s.sla.compliance_pct), fmt(s.sla.on_time) + " / " + fmt(s.sla.measured), slaTone),
    tile("Tiếp nhận → xác nhận", duration(s.time_to_acknowledge.median_seconds), "trung vị · p90 " + duration(s.time_to_acknowledge.p90_seconds)),
    tile("Tiếp nhận → xử lý xong", duration(s.time_to_resolve.median_seconds), "trung vị · p90 " + duration(s.time_to_resolve.p90_seconds)),
    tile("Trùng lặp", pct(s.duplicate_share_pct), fmt(c.duplicate) + " phản ánh"),
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

function drawDepartments(s) {
  const body = $("departments");
  clear(body);
  const rows = [...s.departments].sort((a, b) => b.open - a.open || b.received - a.received);
  for (const d of rows) {
    const tr = el("tr");
    const onTime = d.on_time_pct;
    const acknowledged = d.acknowledge_on_time_pct;
    tr.append(
      el("td", { title: d.code || "" }, d.name || d.code || "(chưa phân công)"),
      el("td", {}, fmt(d.received)),
      el("td", {}, fmt(d.open)),
      el("td", { class: d.overdue ? "bad" : "" }, fmt(d.overdue)),
      el("td", { class: onTime === null ? "" : onTime >= 90 ? "good" : onTime >= 75 ? "warn" : "bad" }, pct(onTime)),
      el("td", { class: acknowledged === null ? "" : acknowledged >= 90 ? "good" : acknowledged >= 75 ? "warn" : "bad",
                 title: fmt(d.acknowledged_on_time) + " / " + fmt(d.acknowledge_measured) }, pct(acknowledged)),
      el("td", {}, fmt(d.transfers)),
      el("td", {}, d.average_rating === null ? "–" : d.average_rating.toFixed(1) + " ★ (" + fmt(d.ratings) + ")"),
    );
    body.append(tr);
  }
}

function drawBars(svg, items, options) {
  // items: [{label, value, title}] drawn as vertical bars with a few axis labels.
  clear(svg);
  const width = svg.clientWidth || 600, height = Number(svg.getAttribute("height")), pad = { l: 36, r: 6, t: 8, b: 22 };
  const max = Math.max(1, ...items.map((item) => item.value));
  const plotW = width - pad.l - pad.r, plotH = height - pad.t - pad.b;
  const step = plotW / Math.max(1, items.length);
  for (const fraction of [0, 0.5, 1]) {
    const y = pad.t + plotH * (1 - fraction);
    svg.append(el("svg:line", { x1: pad.l, x2: width - pad.r, y1: y, y2: y, stroke: "#263444" }));
    svg.append(el("svg:text", { x: pad.l - 4, y: y + 3, "text-anchor": "end" }, fmt(Math.round(max * fraction))));
  }
  const every = Math.max(1, Math.ceil(items.length / (options.maxLabels || 10)));
  items.forEach((item, index) => {
    const h = plotH * item.value / max;
    const bar = el("svg:rect", { x: pad.l + index * step + step * 0.12, y: pad.t + plotH - h, width: Math.max(1, step * 0.76), height: h, fill: options.color(item) });
    bar.append(el("svg:title", {}, item.title));
    svg.append(bar);
    if (index % every === 0) svg.append(el("svg:text", { x: pad.l + index * step + step / 2, y: height - 6, "text-anchor": "middle" }, item.label));
  });
}

function drawSeries(series) {
  const day = series.bucket === "day";
  const format = new Intl.DateTimeFormat("vi-VN", day ? { timeZone: TIMEZONE, day: "2-digit", month: "2-digit" } : { timeZone: TIMEZONE, hour: "2-digit", day: "2-digit" });
  const names = { received: "Tiếp nhận", resolved: "Đã xử lý", overdue: "Quá hạn" };
  $("series-title").textContent = names[series.metric] + (day ? " theo ngày" : " theo giờ");
  const color = series.metric === "overdue" ? "#ef5350" : series.metric === "resolved" ? "#35c46a" : "#3fa7ff";
  drawBars($("series"), series.points.map((point) => {
    const label = format.format(new Date(point.start));
    return { label, value: point.count, title: label + ": " + fmt(point.count) };
  }), { color: () => color, maxLabels: 12 });
}

function drawBacklog(s) {
  const colors = ["#35c46a", "#8bc34a", "#f0b429", "#ff8a3d", "#ef5350"];
  drawBars($("backlog"), s.backlog.by_age.map((bucket, index) => ({ label: bucket.label, value: bucket.count, title: bucket.label + ": " + fmt(bucket.count), index })),
    { color: (item) => colors[item.index] || "#3fa7ff" });
}

function drawHotspots(collection) {
  const svg = $("hotspots");
  clear(svg);
  const features = collection.features;
  $("hotspots-hint").textContent = fmt(features.length) + " ô (độ phân giải " + collection.resolution + "), " + fmt(collection.total_reports) + " phản ánh có vị trí";
  if (!features.length) return;
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  for (const f of features) for (const [x, y] of f.geometry.coordinates[0]) {
    minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y);
  }
  const width = svg.clientWidth || 400, height = Number(svg.getAttribute("height")), pad = 8;
  const scale = Math.min((width - 2 * pad) / (maxX - minX || 1), (height - 2 * pad) / (maxY - minY || 1));
  const max = Math.max(...features.map((f) => f.properties.count));
  for (const f of [...features].reverse()) {
    const points = f.geometry.coordinates[0].map(([x, y]) => (pad + (x - minX) * scale).toFixed(1) + "," + (height - pad - (y - minY) * scale).toFixed(1)).join(" ");
    const share = f.properties.count / max;
    const hex = el("svg:polygon", { points, fill: "rgb(239," + Math.round(200 - 150 * share) + ",80)", "fill-opacity": (0.25 + 0.75 * share).toFixed(2), stroke: "#0f1720", "stroke-width": 0.5 });
    const top = f.properties.top_categories.map((c) => (c.code || "?") + " " + fmt(c.count)).join(", ");
    hex.append(el("svg:title", {}, f.properties.cell + ": " + fmt(f.properties.count) + " phản ánh — " + top));
    svg.append(hex);
  }
}

async function refresh() {
  const status = $("status");
  if (!credential) { status.textContent = "Dán khóa API (vai trò ioc_viewer) hoặc mở trang với #key=…"; return; }
  const params = filters();
  const seriesParams = new URLSearchParams(params);
  seriesParams.set("metric", $("metric").value);
  seriesParams.set("bucket", Number($("days").value) <= 2 ? "hour" : "day");
  const hotspotParams = new URLSearchParams(params);
  hotspotParams.set("resolution", "8");
  hotspotParams.set("limit", "400");
  try {
    const [summary, series, hotspots] = await Promise.all([
      getJSON("/v1/ioc/summary", params), getJSON("/v1/ioc/timeseries", seriesParams), getJSON("/v1/ioc/hotspots", hotspotParams),
    ]);
    drawTiles(summary);
    drawDepartments(summary);
    drawBacklog(summary);
    drawSeries(series);
    drawHotspots(hotspots);
    fillSelect($("department"), summary.departments, (d) => d.name || d.code);
    fillSelect($("category"), summary.by_category, (c) => c.name || c.code);
    status.className = "";
    status.textContent = "Cập nhật " + new Date(summary.generated_at).toLocaleTimeString("vi-VN", { timeZone: TIMEZONE }) + " · tự làm mới mỗi 30 giây";
  } catch (error) {
    status.className = "error";
    status.textContent = "Không tải được dữ liệu: " + error.message;
  }
}

function start() {
  credential = readFragment();
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
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(refresh, 300); });
}

document.addEventListener("DOMContentLoaded", start);
