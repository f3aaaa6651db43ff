#include "src/httpd/status_page.h"

namespace petrel {

const std::string_view kStatusHtml = R"PAGE(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Petrel status</title>
<link rel="stylesheet" href="/status.css">
<script src="/status.js" defer></script>
</head>
<body>
<header>
  <h1>Petrel</h1>
  <span id="version" class="dim"></span>
  <span class="spacer"></span>
  <span id="uptime" class="dim"></span>
  <span id="link" class="dot bad" title="connection to the broker"></span>
</header>
<main>
  <section class="tiles">
    <div class="tile"><div class="label">clients connected</div><div class="big" id="clients">–</div><div class="small" id="clients-sub"></div></div>
    <div class="tile"><div class="label">messages in / s</div><div class="big in" id="rate-in">–</div><div class="small" id="bytes-in"></div></div>
    <div class="tile"><div class="label">messages out / s</div><div class="big out" id="rate-out">–</div><div class="small" id="bytes-out"></div></div>
    <div class="tile"><div class="label">queued</div><div class="big" id="queued">–</div><div class="small" id="queued-sub"></div></div>
    <div class="tile"><div class="label">store</div><div class="big" id="store">–</div><div class="bar"><div id="store-bar"></div></div><div class="small" id="store-sub"></div></div>
  </section>
  <section class="charts">
    <div class="panel"><h2>Messages per second <span class="key in">in</span> <span class="key out">out</span></h2><canvas id="chart-rates"></canvas></div>
    <div class="panel"><h2>Clients connected</h2><canvas id="chart-clients"></canvas></div>
  </section>
  <section class="lists">
    <div class="panel"><h2>Top topics</h2><table id="topics"><thead><tr><th>topic</th><th class="num">msg/s</th><th class="barcol"></th></tr></thead><tbody></tbody></table><p class="empty" id="topics-empty">no messages</p></div>
    <div class="panel"><h2>Share groups <span id="groups-count" class="dim"></span></h2><table id="groups"><thead><tr><th>group · filter</th><th class="num">members</th><th class="num">queued</th><th class="num">in flight</th><th class="barcol"></th></tr></thead><tbody></tbody></table><p class="empty" id="groups-empty">no share groups</p></div>
    <div class="panel"><h2>Bridges</h2><table id="bridges"><thead><tr><th>bridge</th><th class="num">forwarded</th><th class="num">received</th><th class="num">queued</th><th class="num">reconnects</th></tr></thead><tbody></tbody></table><p class="empty" id="bridges-empty">no bridges</p>
      <h2 class="second">Delayed</h2><p id="delayed" class="dim"></p>
      <h2 class="second">CPU by thread</h2><p id="threads" class="dim" title="main: sessions and routing; petrel-io-N: the worker loops' sockets; petrel-store: the store's commits"></p>
      <h2 class="second">Cluster</h2><p id="cluster" class="dim"></p><table id="nodes"><thead><tr><th>node</th><th class="num">clients</th><th class="num">sessions</th><th class="num">filters</th><th class="num">sent</th><th class="num">received</th></tr></thead><tbody></tbody></table><p class="empty" id="nodes-empty"></p></div>
  </section>
</main>
</body>
</html>
)PAGE";

const std::string_view kStatusCss = R"PAGE(:root {
  --bg: #0b0f14; --panel: #131a22; --line: #233041; --text: #e6edf3; --dim: #8b98a5;
  --in: #4cc9f0; --out: #f9c74f; --good: #52d273; --bad: #ef476f;
}
* { box-sizing: border-box; }
html, body { margin: 0; background: var(--bg); color: var(--text);
  font: 18px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { display: flex; align-items: baseline; gap: 1rem; padding: 0.8rem 1.4rem; border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 1.8rem; letter-spacing: 0.04em; }
h2 { margin: 0 0 0.6rem; font-size: 1.05rem; font-weight: 600; color: var(--dim); text-transform: uppercase; letter-spacing: 0.06em; }
h2.second { margin-top: 1.2rem; }
.dim { color: var(--dim); }
.spacer { flex: 1; }
.dot { width: 0.9rem; height: 0.9rem; border-radius: 50%; display: inline-block; align-self: center; }
.dot.good { background: var(--good); } .dot.bad { background: var(--bad); }
main { padding: 1rem 1.4rem; display: grid; gap: 1rem; }
.tiles { display: grid; grid-template-columns: repeat(5, 1fr); gap: 1rem; }
.tile, .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 0.9rem 1.1rem; min-width: 0; }
.label { color: var(--dim); font-size: 0.95rem; text-transform: uppercase; letter-spacing: 0.06em; }
.big { font-size: 3.2rem; font-weight: 700; font-variant-numeric: tabular-nums; line-height: 1.1; margin: 0.2rem 0;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.big.in { color: var(--in); } .big.out { color: var(--out); }
.small { color: var(--dim); font-size: 1rem; font-variant-numeric: tabular-nums; }
.bar { height: 0.5rem; background: var(--line); border-radius: 4px; overflow: hidden; margin: 0.3rem 0; }
.bar > div { height: 100%; width: 0; background: var(--good); }
.charts { display: grid; grid-template-columns: 2fr 1fr; gap: 1rem; }
canvas { width: 100%; height: 210px; display: block; }
.key { font-size: 0.9rem; text-transform: none; margin-left: 0.6rem; }
.key::before { content: ""; display: inline-block; width: 0.9rem; height: 0.25rem; margin-right: 0.3rem; vertical-align: middle; }
.key.in { color: var(--in); } .key.in::before { background: var(--in); }
.key.out { color: var(--out); } .key.out::before { background: var(--out); }
.lists { display: grid; grid-template-columns: 1.1fr 1.5fr 0.9fr; gap: 1rem; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; }
th { text-align: left; color: var(--dim); font-weight: 500; font-size: 0.9rem; padding: 0.2rem 0.4rem; border-bottom: 1px solid var(--line); }
td { padding: 0.22rem 0.4rem; border-bottom: 1px solid var(--line); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; font-variant-numeric: tabular-nums; }
.num { text-align: right; width: 5.2rem; }
.barcol { width: 18%; }
.filter { color: var(--dim); margin-left: 0.6rem; }
td .bar { margin: 0; }
td .bar > div { background: var(--in); }
.state { display: inline-block; width: 0.7rem; height: 0.7rem; border-radius: 50%; margin-right: 0.5rem; }
.empty { color: var(--dim); margin: 0.5rem 0 0; }
@media (max-width: 1100px) { .tiles { grid-template-columns: repeat(2, 1fr); } .charts, .lists { grid-template-columns: 1fr; } }
)PAGE";

const std::string_view kStatusJs = R"PAGE("use strict";
// Polls /api/v1/stats every second and shows it. Broker data is set with
// textContent only.
(function () {
  const $ = (id) => document.getElementById(id);
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  function num(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 1e9) return (v / 1e9).toFixed(1) + " G";
    if (v >= 1e6) return (v / 1e6).toFixed(1) + " M";
    if (v >= 1e4) return (v / 1e3).toFixed(1) + " k";
    if (v >= 100 || Number.isInteger(v)) return Math.round(v).toLocaleString("en-US");
    return v.toFixed(1);
  }
  function bytes(v) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 || v >= 100 ? Math.round(v) : v.toFixed(1)) + " " + units[i];
  }
  function duration(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    return m + "m " + (s % 60) + "s";
  }

  // A line chart of series sharing one y axis, drawn on a canvas.
  function chart(canvas, series) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    g.setLineDash([]);
    let max = 1;
    for (const s of series) for (const v of s.values) max = Math.max(max, v);
    // A round top for the axis: 1, 2 or 5 times a power of ten.
    const p = Math.pow(10, Math.floor(Math.log10(max)));
    const top = [1, 2, 5, 10].map((k) => k * p).find((t) => t >= max);
    const left = 56, right = 8, upper = 8, lower = 22;
    const cw = w - left - right, ch = h - upper - lower;
    g.font = "13px system-ui, sans-serif";
    g.fillStyle = css("--dim");
    g.strokeStyle = css("--line");
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = upper + ch - ch * i / 4;
      g.beginPath(); g.moveTo(left, y + 0.5); g.lineTo(w - right, y + 0.5); g.stroke();
      g.fillText(num(top * i / 4), left - 8, y);
    }
    g.textAlign = "center";
    g.textBaseline = "top";
    const n = 120;
    for (const t of [120, 90, 60, 30]) g.fillText("-" + t + "s", left + cw * (n - t) / n, upper + ch + 5);
    for (const s of series) {
      const v = s.values;
      if (v.length < 2) continue;
      g.strokeStyle = s.color;
      g.lineWidth = 2.5;
      g.setLineDash(s.dash || []);
      g.lineJoin = "round";
      g.beginPath();
      for (let i = 0; i < v.length; i++) {
        const x = left + cw * (n - v.length + i + 1) / n;
        const y = upper + ch - ch * v[i] / top;
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      }
      g.stroke();
      if (s.fill) {
        g.lineTo(left + cw, upper + ch);
        g.lineTo(left + cw * (n - v.length + 1) / n, upper + ch);
        g.closePath();
        g.globalAlpha = 0.12;
        g.fillStyle = s.color;
        g.fill();
        g.globalAlpha = 1;
      }
    }
  }

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    td.title = text;
    return td;
  }
  function barCell(row, fraction) {
    const td = row.insertCell();
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = Math.max(0, Math.min(100, fraction * 100)).toFixed(1) + "%";
    bar.appendChild(fill);
    td.appendChild(bar);
  }
  function table(id, rows, fill) {
    const body = $(id).tBodies[0];
    body.replaceChildren();
    for (const r of rows) fill(body.insertRow(), r);
    $(id + "-empty").style.display = rows.length ? "none" : "block";
    $(id).style.display = rows.length ? "" : "none";
  }

  let last = null;
  let lastCpu = null;
  // A share of one CPU per thread since the last poll (at least half a
  // second before: the kernel counts in ticks); its total until then.
  function threads(s) {
    const cpu = s.thread_cpu_seconds || {};
    const names = Object.keys(cpu);
    if (!names.length) return "–";
    if (lastCpu && s.uptime_seconds - lastCpu.at < 0.5) return null;
    const dt = lastCpu ? s.uptime_seconds - lastCpu.at : 0;
    const text = names.map((t) => dt > 0
      ? t + " " + Math.round(Math.max(0, cpu[t] - (lastCpu.cpu[t] || 0)) / dt * 100) + " %"
      : t + " " + cpu[t].toFixed(1) + " s").join(" · ");
    lastCpu = { at: s.uptime_seconds, cpu: cpu };
    return text;
  }
  function show(s) {
    last = s;
    $("version").textContent = "version " + s.version;
    $("uptime").textContent = "up " + duration(s.uptime_seconds);
    $("clients").textContent = num(s.clients.connected);
    $("clients-sub").textContent = "max " + num(s.clients.maximum) + " · sessions " + num(s.clients.sessions);
    $("rate-in").textContent = num(s.rates.received_per_second);
    $("rate-out").textContent = num(s.rates.sent_per_second);
    $("bytes-in").textContent = bytes(s.rates.received_bytes_per_second) + "/s";
    $("bytes-out").textContent = bytes(s.rates.sent_bytes_per_second) + "/s";
    $("queued").textContent = num(s.messages.queued + s.messages.queued_in_groups);
    $("queued-sub").textContent = "sessions " + num(s.messages.queued) + " · groups " +
      num(s.messages.queued_in_groups) + " · in flight " + num(s.messages.inflight) +
      " · retained " + num(s.messages.retained);
    if (s.store.enabled) {
      $("store").textContent = bytes(s.store.used_bytes);
      const f = s.store.limit_bytes ? s.store.used_bytes / s.store.limit_bytes : 0;
      $("store-bar").style.width = (f * 100).toFixed(1) + "%";
      $("store-bar").style.background = f > 0.8 ? css("--bad") : css("--good");
      $("store-sub").textContent = "of " + bytes(s.store.limit_bytes) + " · commit " +
        (s.store.commit_average_seconds * 1000).toFixed(2) + " ms avg";
    } else {
      $("store").textContent = "off";
      $("store-sub").textContent = "persistence disabled";
    }
    const maxTopic = s.top_topics.reduce((m, t) => Math.max(m, t.per_second), 0) || 1;
    table("topics", s.top_topics, (row, t) => {
      cell(row, t.topic);
      cell(row, num(t.per_second), "num");
      barCell(row, t.per_second / maxTopic);
    });
    const maxQueued = s.share_groups.reduce((m, g) => Math.max(m, g.queued), 0) || 1;
    $("groups-count").textContent = s.share_groups_total > s.share_groups.length
      ? "(" + s.share_groups.length + " of " + s.share_groups_total + ")" : "";
    table("groups", s.share_groups, (row, g) => {
      const td = cell(row, g.group);
      const filter = document.createElement("span");
      filter.className = "filter";
      filter.textContent = g.filter;
      td.appendChild(filter);
      td.title = g.group + " " + g.filter;
      cell(row, g.online + " / " + g.members, "num");
      cell(row, num(g.queued), "num");
      cell(row, num(g.inflight), "num");
      barCell(row, g.queued / maxQueued);
    });
    table("bridges", s.bridges, (row, b) => {
      const td = cell(row, b.name);
      const dot = document.createElement("span");
      dot.className = "state";
      dot.style.background = b.up ? css("--good") : css("--bad");
      td.prepend(dot);
      cell(row, num(b.forwarded), "num");
      cell(row, num(b.received), "num");
      cell(row, num(b.queued), "num");
      cell(row, num(b.reconnects), "num");
    });
    $("delayed").textContent = s.delayed.enabled
      ? "pending " + num(s.delayed.pending) + " · fired " + num(s.delayed.fired) + " · dropped " +
        num(s.delayed.dropped) + " · refused " + num(s.delayed.refused)
      : "off";
    const t = threads(s);
    if (t !== null) $("threads").textContent = t;
    const c = s.cluster;
    $("cluster").textContent = c && c.enabled
      ? "node " + c.node + " · " + (c.up ? "linked" : "link down") + " · sent " + num(c.sent) +
        " · received " + num(c.received) + " · dropped " + num(c.dropped) +
        (c.groups ? " · share groups " + num(c.groups.count) + ", " + num(c.groups.held) + " messages held" : "") +
        (c.retained ? " · retained bucket " + (c.retained.bucket_up ? "open" : "not open") +
          " · session registry " + (c.sessions_bucket_up ? "open" : "not open") : "")
      : "alone";
    table("nodes", c && c.nodes ? c.nodes : [], (row, n) => {
      const td = cell(row, n.self ? n.name + " (this node)" : n.name);
      td.title = n.self ? "this node" : "heard " + (n.heard_ms_ago / 1000).toFixed(1) + " s ago";
      cell(row, num(n.clients), "num");
      cell(row, num(n.sessions), "num");
      cell(row, num(n.filters), "num");
      cell(row, num(n.sent), "num");
      cell(row, num(n.received), "num");
    });
    draw();
  }
  function draw() {
    if (!last) return;
    const h = last.history;
    chart($("chart-rates"), [
      { values: h.map((r) => r.received_per_second), color: css("--in"), fill: true },
      { values: h.map((r) => r.sent_per_second), color: css("--out"), dash: [8, 5] },
    ]);
    chart($("chart-clients"), [{ values: h.map((r) => r.clients), color: css("--good"), fill: true }]);
  }

  async function poll() {
    try {
      const r = await fetch("/api/v1/stats", { cache: "no-store" });
      if (!r.ok) throw new Error(r.status);
      show(await r.json());
      $("link").className = "dot good";
    } catch (e) {
      $("link").className = "dot bad";
    }
    setTimeout(poll, 1000);
  }
  window.addEventListener("resize", draw);
  poll();
})();
)PAGE";

}  // namespace petrel
