-- dstream/monitor/page.lua: the live page served at / by dstream.monitor (plain HTML, hand-drawn SVG).
--
-- Modelled on Spark's Streaming tab: input rate, scheduling delay, processing time and total
-- delay per batch, as timelines with their averages, the inputs with their rate limits, and the
-- last batches. The page polls /api/streams and /api/batches every second; it needs nothing
-- but the job's own endpoint (no external scripts, fonts or styles).
local M = {}

M.html = [==[<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dstream</title>
<style>
  :root { --fg: #1d2430; --muted: #6b7585; --line: #e3e7ee; --bg: #f6f8fb; --card: #fff;
          --c1: #2f6fdf; --c2: #d9822b; --c3: #2e9e6a; --c4: #b0428f; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color: var(--fg); background: var(--bg); }
  header { display: flex; align-items: baseline; gap: 16px; padding: 14px 24px;
           background: #1d2430; color: #fff; }
  header h1 { margin: 0; font-size: 18px; font-weight: 600; }
  header .state { padding: 1px 8px; border-radius: 10px; background: #2e9e6a; font-size: 12px; }
  header .state.stopped, header .state.error { background: #b33; }
  header .meta { color: #b8c2d3; font-size: 13px; }
  main { padding: 16px 24px; max-width: 1400px; }
  .summary { display: flex; flex-wrap: wrap; gap: 10px; margin-bottom: 14px; }
  .summary div { background: var(--card); border: 1px solid var(--line); border-radius: 6px;
                 padding: 8px 14px; min-width: 130px; }
  .summary b { display: block; font-size: 18px; }
  .summary span { color: var(--muted); font-size: 12px; }
  .charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; }
  .chart { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
  .chart h2 { margin: 0 0 2px; font-size: 14px; font-weight: 600; }
  .chart .stat { color: var(--muted); font-size: 12px; min-height: 16px; }
  .chart svg { display: block; width: 100%; height: 190px; }
  .axis { stroke: #c9d0db; stroke-width: 1; }
  .grid { stroke: #eef1f5; stroke-width: 1; }
  .tick { fill: var(--muted); font-size: 10px; }
  .series { fill: none; stroke-width: 1.8; }
  .area { opacity: 0.12; }
  .ref { stroke: #999; stroke-dasharray: 4 3; stroke-width: 1; }
  h3 { font-size: 14px; margin: 20px 0 6px; }
  table { border-collapse: collapse; width: 100%; background: var(--card); border: 1px solid var(--line); }
  th, td { text-align: right; padding: 4px 10px; border-bottom: 1px solid var(--line); font-variant-numeric: tabular-nums; }
  th:first-child, td:first-child { text-align: left; }
  th { font-weight: 600; color: var(--muted); font-size: 12px; }
  .empty { color: var(--muted); padding: 10px; }
  .err { color: #b33; }
  @media (max-width: 900px) { .charts { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1 id="name">dstream</h1>
  <span class="state" id="state">&hellip;</span>
  <span class="meta" id="meta"></span>
</header>
<main>
  <div class="summary" id="summary"></div>
  <div class="charts">
    <div class="chart"><h2>Input rate</h2><div class="stat" id="stat-rate"></div>
      <svg id="chart-rate" data-points="0" viewBox="0 0 560 190" preserveAspectRatio="none"></svg></div>
    <div class="chart"><h2>Scheduling delay</h2><div class="stat" id="stat-sched"></div>
      <svg id="chart-sched" data-points="0" viewBox="0 0 560 190" preserveAspectRatio="none"></svg></div>
    <div class="chart"><h2>Processing time</h2><div class="stat" id="stat-proc"></div>
      <svg id="chart-proc" data-points="0" viewBox="0 0 560 190" preserveAspectRatio="none"></svg></div>
    <div class="chart"><h2>Total delay</h2><div class="stat" id="stat-total"></div>
      <svg id="chart-total" data-points="0" viewBox="0 0 560 190" preserveAspectRatio="none"></svg></div>
  </div>
  <h3>Inputs</h3>
  <table id="inputs"><thead><tr><th>Input</th><th>Records</th><th>Max rate</th><th>Rate limit</th>
    <th>Backpressure</th><th>State</th></tr></thead><tbody></tbody></table>
  <h3>Last batches</h3>
  <table id="batches"><thead><tr><th>Batch time</th><th>Records</th><th>Scheduling delay</th>
    <th>Processing time</th><th>Total delay</th><th>Stages</th></tr></thead><tbody></tbody></table>
</main>
<script>
"use strict";
var SVGNS = "http://www.w3.org/2000/svg";
var W = 560, H = 190, PAD_L = 52, PAD_R = 10, PAD_T = 10, PAD_B = 24;

function el(name, attrs, parent) {
  var e = document.createElementNS(SVGNS, name);
  for (var k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function text(node, s) { node.textContent = s; return node; }
function fmtNum(x, digits) {
  if (x === null || x === undefined || isNaN(x)) return "-";
  return x.toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 0 : digits });
}
function fmtMs(ms) {
  if (ms === null || ms === undefined) return "-";
  if (ms >= 10000) return fmtNum(ms / 1000, 1) + " s";
  return fmtNum(ms, ms < 10 ? 1 : 0) + " ms";
}
function fmtTime(ms, withMs) {
  var d = new Date(ms);
  var s = d.toTimeString().slice(0, 8);
  if (withMs) s += "." + String(d.getMilliseconds()).padStart(3, "0");
  return s;
}
// A tick label with as many decimals as the scale needs.
function fmtTick(v, maxV, unit) {
  var digits = maxV >= 40 ? 0 : maxV >= 4 ? 1 : maxV >= 0.4 ? 2 : 3;
  if (unit === "ms") {
    if (maxV >= 10000) return fmtNum(v / 1000, maxV >= 40000 ? 0 : 1) + " s";
    return fmtNum(v, digits) + " ms";
  }
  return fmtNum(v, digits);
}
function niceMax(v) {
  if (!(v > 0)) return 1;
  var p = Math.pow(10, Math.floor(Math.log10(v)));
  var m = v / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

// points: [[time, value]...] oldest first. ref: a dashed reference value (the batch interval).
function drawChart(svg, points, color, unit, ref) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  svg.setAttribute("data-points", String(points.length));
  var plotW = W - PAD_L - PAD_R, plotH = H - PAD_T - PAD_B;
  var maxV = 0;
  points.forEach(function (p) { if (p[1] > maxV) maxV = p[1]; });
  if (ref && ref > maxV) maxV = ref;
  maxV = niceMax(maxV * 1.05);
  for (var i = 0; i <= 4; i++) {
    var y = PAD_T + plotH - plotH * i / 4;
    el("line", { x1: PAD_L, x2: W - PAD_R, y1: y, y2: y, "class": i ? "grid" : "axis" }, svg);
    text(el("text", { x: PAD_L - 6, y: y + 3, "text-anchor": "end", "class": "tick" }, svg),
         fmtTick(maxV * i / 4, maxV, unit));
  }
  el("line", { x1: PAD_L, x2: PAD_L, y1: PAD_T, y2: PAD_T + plotH, "class": "axis" }, svg);
  if (points.length === 0) {
    text(el("text", { x: PAD_L + plotW / 2, y: PAD_T + plotH / 2, "text-anchor": "middle", "class": "tick" }, svg),
         "waiting for the first batch");
    return;
  }
  var t0 = points[0][0], t1 = points[points.length - 1][0];
  var span = t1 > t0 ? t1 - t0 : 1;
  function px(t) { return PAD_L + (points.length === 1 ? plotW / 2 : plotW * (t - t0) / span); }
  function py(v) { return PAD_T + plotH - plotH * v / maxV; }
  var d = points.map(function (p, i) { return (i ? "L" : "M") + px(p[0]).toFixed(1) + "," + py(p[1]).toFixed(1); }).join(" ");
  var area = d + " L" + px(t1).toFixed(1) + "," + py(0) + " L" + px(t0).toFixed(1) + "," + py(0) + " Z";
  el("path", { d: area, fill: color, "class": "area" }, svg);
  el("path", { d: d, stroke: color, "class": "series" }, svg);
  if (points.length <= 60) points.forEach(function (p) {
    el("circle", { cx: px(p[0]).toFixed(1), cy: py(p[1]).toFixed(1), r: 2.2, fill: color }, svg);
  });
  if (ref) el("line", { x1: PAD_L, x2: W - PAD_R, y1: py(ref), y2: py(ref), "class": "ref" }, svg);
  var withMs = span < 10000;
  text(el("text", { x: PAD_L, y: H - 6, "class": "tick" }, svg), fmtTime(t0, withMs));
  text(el("text", { x: W - PAD_R, y: H - 6, "text-anchor": "end", "class": "tick" }, svg), fmtTime(t1, withMs));
}

function avg(list) {
  if (!list.length) return null;
  return list.reduce(function (a, b) { return a + b; }, 0) / list.length;
}

var info = null;

function renderStreams(s) {
  info = s;
  text(document.getElementById("name"), s.name);
  document.title = s.name + " - dstream";
  var st = document.getElementById("state");
  text(st, s.state);
  st.className = "state " + s.state;
  var up = s.started_at ? Math.max(0, (s.now - s.started_at) / 1000) : 0;
  text(document.getElementById("meta"), "batch interval " + fmtMs(s.batch_ms) + " \u00b7 " + s.workers +
       " workers \u00b7 " + s.partitions + " partitions \u00b7 up " + fmtNum(up, 0) + " s" +
       (s.backpressure ? " \u00b7 backpressure on" : ""));
  var sum = document.getElementById("summary");
  while (sum.firstChild) sum.removeChild(sum.firstChild);
  [["batches completed", fmtNum(s.batches_completed)], ["batches failed", fmtNum(s.batches_failed)],
   ["batches queued", fmtNum(s.queued)], ["running", s.running ? fmtTime(s.running, s.batch_ms % 1000 !== 0) : "-"]]
    .forEach(function (kv) {
      var d = document.createElement("div");
      text(d.appendChild(document.createElement("b")), kv[1]);
      text(d.appendChild(document.createElement("span")), kv[0]);
      sum.appendChild(d);
    });
  var tb = document.querySelector("#inputs tbody");
  while (tb.firstChild) tb.removeChild(tb.firstChild);
  if (!s.inputs.length) {
    var r = tb.insertRow(); var c = r.insertCell(); c.colSpan = 6; c.className = "empty";
    text(c, "no inputs");
  }
  s.inputs.forEach(function (i) {
    var r = tb.insertRow();
    var state = i.connected === undefined ? "" : (i.connected ? "receiving" : "not connected");
    if (i.throttled) state += " (throttled)";
    if (i.backlog) state = fmtNum(i.backlog) + " rows waiting";
    [i.name, fmtNum(i.records), i.max_rate ? fmtNum(i.max_rate) + "/s" : "-",
     i.rate_limit ? fmtNum(i.rate_limit) + "/s" : "none",
     i.backpressure_rate ? fmtNum(i.backpressure_rate) + "/s" : "-", state]
      .forEach(function (v) { text(r.insertCell(), v); });
    if (i.last_error) { var c = r.cells[5]; c.className = "err"; c.title = i.last_error; }
  });
}

function renderBatches(list) {
  var bms = info ? info.batch_ms : 1000;
  var ordered = list.slice().reverse(); // oldest first
  var rate = ordered.map(function (b) { return [b.time, b.records / (bms / 1000)]; });
  var sched = ordered.map(function (b) { return [b.time, b.scheduling_delay_ms]; });
  var proc = ordered.map(function (b) { return [b.time, b.processing_ms]; });
  var total = ordered.map(function (b) { return [b.time, b.total_delay_ms]; });
  drawChart(document.getElementById("chart-rate"), rate, "#2f6fdf", "rec/s");
  drawChart(document.getElementById("chart-sched"), sched, "#d9822b", "ms");
  drawChart(document.getElementById("chart-proc"), proc, "#2e9e6a", "ms", bms);
  drawChart(document.getElementById("chart-total"), total, "#b0428f", "ms");
  function stat(id, pts, fmt, label) {
    var a = avg(pts.map(function (p) { return p[1]; }));
    text(document.getElementById(id), a === null ? "" : "avg " + fmt(a) + label + " over " + pts.length + " batches");
  }
  stat("stat-rate", rate, function (x) { return fmtNum(x, 1); }, " records/s");
  stat("stat-sched", sched, fmtMs, "");
  stat("stat-proc", proc, fmtMs, "");
  stat("stat-total", total, fmtMs, "");
  var tb = document.querySelector("#batches tbody");
  while (tb.firstChild) tb.removeChild(tb.firstChild);
  if (!list.length) {
    var r = tb.insertRow(); var c = r.insertCell(); c.colSpan = 6; c.className = "empty";
    text(c, "no batch completed yet");
  }
  list.slice(0, 15).forEach(function (b) {
    var r = tb.insertRow();
    var stages = b.stages.map(function (s) { return s.name + " (" + s.tasks + ")"; }).join(", ");
    [fmtTime(b.time, bms % 1000 !== 0), fmtNum(b.records), fmtMs(b.scheduling_delay_ms),
     fmtMs(b.processing_ms), fmtMs(b.total_delay_ms), stages || "-"]
      .forEach(function (v) { text(r.insertCell(), v); });
  });
}

function getJSON(url) {
  return fetch(url, { cache: "no-store" }).then(function (r) {
    if (!r.ok) throw new Error(url + ": " + r.status);
    return r.json();
  });
}

function refresh() {
  getJSON("api/streams").then(function (s) {
    renderStreams(s);
    return getJSON("api/batches?n=100");
  }).then(renderBatches).catch(function (e) {
    var st = document.getElementById("state");
    text(st, "unreachable");
    st.className = "state error";
  });
}

refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
]==]

return M
