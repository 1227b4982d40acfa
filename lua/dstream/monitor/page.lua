-- dstream/monitor/page.lua: the live page served at / by dstream.monitor (plain HTML, hand-drawn SVG).
--
-- Modelled on Spark's Streaming tab: input rate, scheduling delay, processing time and total
-- delay per batch, as timelines with their averages, the inputs with their rate limits, the
-- graph of streams, the workers, keyed state and checkpoints, and the last batches; a click on
-- a batch opens its page (#batch=<time>, as Spark's batch details: its stages with a summary of
-- their tasks, each task, and the error of a failed one). A failed context's error is shown on
-- top. The page polls the JSON routes every second; it needs nothing but the job's own endpoint
-- (no external scripts, fonts or styles).
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
  #failure { display: none; background: #fdecec; border: 1px solid #e4a5a5; border-radius: 6px;
             padding: 10px 14px; margin-bottom: 14px; }
  #failure.on { display: block; }
  #failure b { color: #b33; }
  pre { white-space: pre-wrap; word-break: break-word; margin: 6px 0 0; font-size: 12px;
        background: #fff7f7; padding: 6px 8px; border-radius: 4px; }
  a { color: var(--c1); }
  tr.failed td { color: #b33; }
  .view { display: none; }
  .view.on { display: block; }
  .cards { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; overflow-x: auto; }
  .card h3 { margin: 0 0 8px; }
  .card td, .card th { white-space: nowrap; }
  .card td.left { white-space: normal; }
  #graph { display: block; }
  #graph rect { fill: #eef3fc; stroke: #2f6fdf; stroke-width: 1.2; rx: 5; }
  #graph rect.input { fill: #eaf6f0; stroke: #2e9e6a; }
  #graph rect.state { fill: #fbf0e4; stroke: #d9822b; }
  #graph rect.output { stroke-width: 2.4; }
  #graph text { font-size: 11px; fill: var(--fg); }
  #graph text.sub { fill: var(--muted); font-size: 10px; }
  #graph path { fill: none; stroke: #8a94a6; stroke-width: 1.2; }
  .stage { margin-top: 14px; }
  td.left, th.left { text-align: left; }
  details summary { cursor: pointer; }
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
  <div id="failure"><b>This job failed</b> <span id="failure-when"></span>; the page shows what it
    left (read-only) until the process is stopped (Ctrl-C or SIGTERM).<pre id="failure-error"></pre></div>
  <div class="view" id="batch-view"></div>
  <div class="view on" id="overview">
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
  <div id="cluster" class="view">
  <h3>Cluster <span class="tick" id="cluster-member"></span></h3>
  <table id="cluster-inputs"><thead><tr><th>Kafka input</th><th>Member id</th><th>Assigned partitions</th>
    <th>Rebalances</th></tr></thead><tbody></tbody></table>
  <table id="cluster-state"><thead><tr><th>Stateful operator</th><th>State partitions owned</th><th>Keys</th>
    <th>Restoring now</th><th>Restores done</th></tr></thead><tbody></tbody></table>
  </div>
  <h3>Last batches <span class="tick">(click one for its stages and tasks)</span></h3>
  <table id="batches"><thead><tr><th>Batch time</th><th>Records</th><th>Scheduling delay</th>
    <th>Processing time</th><th>Total delay</th><th>Stages</th></tr></thead><tbody></tbody></table>
  <h3>Graph of streams</h3>
  <div class="card"><svg id="graph" data-nodes="0" data-edges="0" width="200" height="60"></svg></div>
  <div class="cards">
    <div class="card"><h3>Workers</h3>
      <table id="workers"><thead><tr><th>Worker</th><th>Tasks</th><th>Failed</th><th>Time busy</th>
        <th>Busy</th><th>Lua memory</th><th>Running</th></tr></thead><tbody></tbody></table></div>
    <div class="card"><h3>State and checkpoints</h3>
      <table id="state"><thead><tr><th>Operator</th><th>Stream</th><th>Partitions</th><th>Keys</th></tr></thead><tbody></tbody></table>
      <div class="stat" id="checkpoint"></div></div>
  </div>
  </div>
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
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
function fmtBytes(b) {
  if (b === null || b === undefined) return "-";
  if (b >= 1048576) return fmtNum(b / 1048576, 1) + " MiB";
  if (b >= 1024) return fmtNum(b / 1024, 1) + " KiB";
  return fmtNum(b) + " B";
}
function h(tag, txt, attrs) {
  var e = document.createElement(tag);
  if (txt !== undefined && txt !== null) e.textContent = txt;
  for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
  return e;
}
function batchLink(t) {
  var a = h("a", fmtTime(t, info && info.batch_ms % 1000 !== 0), { href: "#batch=" + t });
  a.title = t + " ms";
  return a;
}

function renderStreams(s) {
  info = s;
  text(document.getElementById("name"), s.name);
  document.title = s.name + " - dstream";
  var st = document.getElementById("state");
  text(st, s.error ? "failed" : s.state);
  st.className = "state " + (s.error ? "error" : s.state);
  var fail = document.getElementById("failure");
  fail.className = s.error ? "on" : "";
  text(document.getElementById("failure-error"), s.error || "");
  text(document.getElementById("failure-when"), s.failed_at ? "at " + fmtTime(s.failed_at, true) : "");
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
  renderCluster(s.cluster);
  drawGraph(s.streams);
}

// A cluster process (dstream --cluster APP): which member it is, what the group gives it, and
// per stateful operator its state partitions, the restores running now and those done.
function renderCluster(c) {
  var box = document.getElementById("cluster");
  box.className = c ? "view on" : "view";
  if (!c) return;
  text(document.getElementById("cluster-member"), "group " + c.group + " \u00b7 member " + (c.member_id || "(joining)") +
       " \u00b7 " + fmtNum(c.rebalances) + " rebalances");
  var tb = clear(document.querySelector("#cluster-inputs tbody"));
  c.inputs.forEach(function (i) {
    var r = tb.insertRow();
    [i.name + (i.state_of ? " (state " + i.state_of + ")" : ""), i.member_id || "-",
     i.assigned.length ? i.assigned.join(", ") : "none", fmtNum(i.rebalances)]
      .forEach(function (v) { text(r.insertCell(), v); });
  });
  var ts = clear(document.querySelector("#cluster-state tbody"));
  if (!c.state.length) {
    var r0 = ts.insertRow(); var c0 = r0.insertCell(); c0.colSpan = 5; c0.className = "empty";
    text(c0, "no keyed state across the cluster");
  }
  c.state.forEach(function (o) {
    var r = ts.insertRow();
    var now = o.restoring.map(function (x) {
      return "p" + x.partition + ": " + fmtNum(x.changes) + " changes, " + fmtBytes(x.bytes) + ", " + fmtNum(x.seconds, 1) + " s";
    }).join("; ");
    var d = o.restores;
    [o.operator, (o.owned.length ? o.owned.join(", ") : "none") + " of " + fmtNum(o.partitions),
     o.keys === undefined ? "-" : fmtNum(o.keys), now || "-",
     fmtNum(d.count) + " (" + fmtNum(d.changes) + " changes, " + fmtBytes(d.bytes) + ", " + fmtNum(d.seconds, 2) + " s)"]
      .forEach(function (v) { text(r.insertCell(), v); });
    r.cells[3].className = "restoring";
    if (o.recent_restores.length) {
      r.cells[4].title = "last restores: " + o.recent_restores.map(function (x) {
        return "p" + x.partition + " offsets " + x.from + "-" + x.to + ": " + fmtNum(x.changes) + " changes in " + fmtNum(x.seconds, 3) + " s";
      }).join("; ");
    }
  });
}

// The graph of streams: a column per depth (inputs left, outputs right), an arrow per parent.
function drawGraph(streams) {
  var svg = document.getElementById("graph");
  var key = JSON.stringify(streams);
  if (svg.getAttribute("data-key") === key) return; // the graph does not change while the job runs
  svg.setAttribute("data-key", key);
  clear(svg);
  var byId = {}, depth = {}, cols = [], edges = 0;
  streams.forEach(function (s) { byId[s.id] = s; });
  function d(s) {
    if (depth[s.id] !== undefined) return depth[s.id];
    depth[s.id] = 0;
    var m = -1;
    s.parents.forEach(function (p) { if (byId[p]) m = Math.max(m, d(byId[p])); });
    return (depth[s.id] = m + 1);
  }
  streams.forEach(function (s) { var k = d(s); (cols[k] = cols[k] || []).push(s); });
  var BW = 160, BH = 40, GX = 56, GY = 14, pos = {}, rows = 0;
  cols.forEach(function (col, c) {
    col.forEach(function (s, r) { pos[s.id] = { x: 8 + c * (BW + GX), y: 8 + r * (BH + GY) }; });
    rows = Math.max(rows, col.length);
  });
  svg.setAttribute("width", 16 + cols.length * (BW + GX) - GX);
  svg.setAttribute("height", 16 + rows * (BH + GY) - GY);
  var defs = el("defs", {}, svg);
  var mk = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" }, defs);
  el("path", { d: "M0,0 L10,5 L0,10 Z", fill: "#8a94a6", stroke: "none" }, mk);
  streams.forEach(function (s) {
    s.parents.forEach(function (p) {
      if (!pos[p]) return;
      var a = pos[p], b = pos[s.id];
      var x1 = a.x + BW, y1 = a.y + BH / 2, x2 = b.x, y2 = b.y + BH / 2;
      el("path", { d: "M" + x1 + "," + y1 + " C" + (x1 + GX / 2) + "," + y1 + " " + (x2 - GX / 2) + "," + y2 + " " + x2 + "," + y2,
                   "marker-end": "url(#arrow)", "class": "edge" }, svg);
      edges++;
    });
  });
  streams.forEach(function (s) {
    var p = pos[s.id], g = el("g", { "class": "node", "data-id": s.id }, svg);
    var cls = (s.input ? "input" : s.state ? "state" : "") + (s.output ? " output" : "");
    el("rect", { x: p.x, y: p.y, width: BW, height: BH, rx: 5, "class": cls }, g);
    text(el("text", { x: p.x + 8, y: p.y + 16 }, g), (s.name.length > 24 ? s.name.slice(0, 23) + "\u2026" : s.name));
    var sub = "#" + s.id + (s.input ? " \u00b7 input" : "") + (s.state_name ? " \u00b7 state " + s.state_name : "") +
      (s.window_ms ? " \u00b7 window " + fmtMs(s.window_ms) : "") + (s.output ? " \u00b7 output" : "");
    text(el("text", { x: p.x + 8, y: p.y + 31, "class": "sub" }, g), sub);
    el("title", {}, g).textContent = s.name + " (stream #" + s.id + ")";
  });
  svg.setAttribute("data-nodes", String(streams.length));
  svg.setAttribute("data-edges", String(edges));
}

function renderWorkers(w) {
  var tb = clear(document.querySelector("#workers tbody"));
  w.workers.forEach(function (x) {
    var r = tb.insertRow();
    ["worker " + x.worker, fmtNum(x.tasks), fmtNum(x.failed), fmtMs(x.busy_ms), fmtNum(x.busy_fraction * 100, 1) + " %",
     fmtBytes(x.lua_memory), x.running_ms !== undefined ? fmtMs(x.running_ms) : "-"]
      .forEach(function (v) { text(r.insertCell(), v); });
    if (x.failed) r.cells[2].className = "err";
  });
}

function renderState(st) {
  var tb = clear(document.querySelector("#state tbody"));
  if (!st.operators.length) {
    var r = tb.insertRow(); var c = r.insertCell(); c.colSpan = 4; c.className = "empty";
    text(c, "no keyed state");
  }
  st.operators.forEach(function (o) {
    var r = tb.insertRow();
    [o.operator, o.stream ? o.name + " #" + o.stream : o.name, fmtNum(o.partitions),
     o.keys === undefined ? "-" : fmtNum(o.keys)].forEach(function (v) { text(r.insertCell(), v); });
  });
  var ck = st.last_checkpoint, line;
  if (!st.checkpoint_dir) line = "no checkpoint directory (checkpoint = dir or --checkpoint)";
  else if (!ck) line = "checkpoints to " + st.checkpoint_dir + " every " + fmtMs(st.checkpoint_ms) + "; none written yet";
  else line = "last checkpoint: batch " + fmtTime(ck.time, true) + ", written at " + fmtTime(ck.written_at, true) +
    " in " + fmtMs(ck.duration_ms) + ", " + fmtBytes(ck.bytes) + " (generation " + ck.generation + ") \u00b7 every " +
    fmtMs(st.checkpoint_ms) + " to " + st.checkpoint_dir;
  if (st.recovered_from) line += " \u00b7 recovered from batch " + fmtTime(st.recovered_from, true);
  text(document.getElementById("checkpoint"), line);
}

// The batch page (#batch=<time>): its figures, its error, and per stage a summary of its tasks
// (quantiles of run time and records, skew = slowest over median) and the tasks themselves.
function renderBatch(b) {
  var v = clear(document.getElementById("batch-view"));
  v.appendChild(h("p")).appendChild(h("a", "\u2190 all batches", { href: "#" }));
  var title = h("h3", "Batch " + fmtTime(b.time, true) + " (" + b.time + " ms): " + b.status, { id: "batch-title" });
  if (b.status === "failed") title.className = "err";
  v.appendChild(title);
  var sum = h("div", null, { "class": "summary" });
  var figs = [["records", fmtNum(b.records)], ["scheduling delay", fmtMs(b.scheduling_delay_ms)],
   ["processing time", fmtMs(b.processing_ms)], ["total delay", fmtMs(b.total_delay_ms)],
   ["stages", fmtNum(b.stages.length)]];
  // to_sql's tasks waiting for a database they could not reach (dstream.sinks.database)
  if (b.db_wait_ms) figs.push(["waited for a database", fmtMs(b.db_wait_ms)]);
  figs.forEach(function (kv) {
    var d = sum.appendChild(h("div"));
    d.appendChild(h("b", kv[1])); d.appendChild(h("span", kv[0]));
  });
  v.appendChild(sum);
  if (b.error) {
    var e = v.appendChild(h("div", null, { id: "batch-error" }));
    e.appendChild(h("b", "Error", { "class": "err" }));
    e.appendChild(h("pre", b.error));
  }
  var shownError = false;
  b.stages.forEach(function (st, i) {
    var box = v.appendChild(h("div", null, { "class": "card stage" }));
    box.appendChild(h("h3", "Stage " + (i + 1) + ": " + st.name + " \u2014 " + st.tasks + " tasks" +
      (st.failed ? ", " + st.failed + " failed" : "") + ", " + fmtMs(st.task_ms) + " in tasks, " +
      fmtNum(st.records_in) + " records in" + (st.records_out !== undefined ? ", " + fmtNum(st.records_out) + " out" : "")));
    if (!st.task_list) { box.appendChild(h("div", "tasks not kept for this batch (only the last batches' are)", { "class": "empty" })); return; }
    if (st.summary.run_ms) {
      var t = box.appendChild(h("table", null, { "class": "quantiles" }));
      var hr = t.createTHead().insertRow();
      ["Metric", "Min", "25th percentile", "Median", "75th percentile", "Max", "Skew (max / median)"]
        .forEach(function (x) { hr.appendChild(h("th", x)); });
      var tb = t.appendChild(h("tbody"));
      [["Task time", st.summary.run_ms, fmtMs], ["Records in", st.summary.records_in, fmtNum]].forEach(function (row, k) {
        var r = tb.insertRow();
        text(r.insertCell(), row[0]);
        row[1].forEach(function (x) { text(r.insertCell(), row[2](x)); });
        text(r.insertCell(), k === 0 ? fmtNum(st.summary.skew, 2) + "\u00d7" : "");
      });
    }
    var tt = box.appendChild(h("table", null, { "class": "tasks" }));
    var hr2 = tt.createTHead().insertRow();
    ["Partition", "Worker", "Status", "Task time", "Records in", "Records out", "Error"]
      .forEach(function (x) { hr2.appendChild(h("th", x, x === "Error" ? { "class": "left" } : {})); });
    var tb2 = tt.appendChild(h("tbody"));
    st.task_list.forEach(function (k) {
      var r = tb2.insertRow();
      if (k.status !== "succeeded") r.className = "failed";
      [fmtNum(k.partition), fmtNum(k.worker), k.status, fmtMs(k.run_ms), fmtNum(k.records_in),
       k.records_out === undefined ? "-" : fmtNum(k.records_out)].forEach(function (x) { text(r.insertCell(), x); });
      var c = r.insertCell(); c.className = "left";
      if (k.error) {
        var det = c.appendChild(h("details"));
        if (!shownError) { det.open = true; shownError = true; } // the first failure, open
        det.appendChild(h("summary", k.error.split("\n")[0]));
        det.appendChild(h("pre", k.error, { "class": "task-error" }));
      }
    });
    if (st.tasks_not_kept) box.appendChild(h("div", st.tasks_not_kept + " more tasks not kept", { "class": "empty" }));
  });
}

function batchFromHash() {
  var m = /^#batch=(\d+)$/.exec(location.hash);
  return m ? m[1] : null;
}
function showView() {
  var t = batchFromHash();
  document.getElementById("overview").className = t ? "view" : "view on";
  document.getElementById("batch-view").className = t ? "view on" : "view";
  if (t) refreshBatch(t);
}
function refreshBatch(t) {
  getJSON("api/batches/" + t).then(renderBatch).catch(function () {
    var v = clear(document.getElementById("batch-view"));
    v.appendChild(h("p")).appendChild(h("a", "\u2190 all batches", { href: "#" }));
    v.appendChild(h("div", "batch " + t + " ms is not kept (the page keeps the last batches)", { "class": "empty" }));
  });
}

function renderBatches(list) {
  var failed = (info && info.failed_batches) || [];
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
  var rows = list.slice(0, 15).concat(failed.map(function (f) { f.failed = true; return f; }));
  rows.sort(function (a, b) { return b.time - a.time; });
  rows.forEach(function (b) {
    var r = tb.insertRow();
    r.insertCell().appendChild(batchLink(b.time));
    if (b.failed) {
      r.className = "failed";
      var c = r.insertCell(); c.colSpan = 5; c.className = "left";
      text(c, "failed: " + b.error.split("\n")[0]);
      return;
    }
    var stages = b.stages.map(function (s) { return s.name + " (" + s.tasks + ")"; }).join(", ");
    [fmtNum(b.records), fmtMs(b.scheduling_delay_ms),
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
    var t = batchFromHash();
    if (t) refreshBatch(t);
    return Promise.all([getJSON("api/batches?n=100"), getJSON("api/workers"), getJSON("api/state")]);
  }).then(function (r) {
    renderBatches(r[0]);
    renderWorkers(r[1]);
    renderState(r[2]);
  }).catch(function (e) {
    var st = document.getElementById("state");
    text(st, "unreachable");
    st.className = "state error";
  });
}

window.addEventListener("hashchange", showView);
showView();
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
]==]

return M
