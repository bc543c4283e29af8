/* Deployment page: charts per quantity for the picked range, refreshed every poll_ms; the latest
 * values and the export links follow. */
"use strict";
(function () {
  const config = window.Suitcase.config();
  const holder = document.getElementById("charts");
  // Quantities a person reads first go in #charts; the raw ones, one click away, in #raw-charts.
  const rawHolder = document.getElementById("raw-charts");
  const status = document.getElementById("chart-status");
  const charts = {};
  let range = config.range;
  let timer = null;

  function render(payload) {
    const seen = {};
    payload.quantities.forEach(function (block) {
      seen[block.quantity] = true;
      let entry = charts[block.quantity];
      if (!entry) {
        const into = rawHolder && block.headline === false ? rawHolder : holder;
        const f = window.Suitcase.chartFigure(into, block);
        entry = charts[block.quantity] = { fig: f.fig, chart: new window.Suitcase.Chart(f.plot, block, { tz: config.tz }) };
      } else {
        entry.chart.update(block);
      }
    });
    Object.keys(charts).forEach(function (q) {
      if (!seen[q]) { charts[q].chart.destroy(); charts[q].fig.remove(); delete charts[q]; }
    });
    if (!payload.quantities.length) status.textContent = config.nodata;
    else status.textContent = "";
    if (rawHolder) {
      const summary = rawHolder.parentElement.querySelector("summary");
      const n = payload.quantities.filter(function (b) { return b.headline === false; }).length;
      summary.textContent = summary.textContent.replace(/\(.*\)$/, "(" + n + ")");
    }
    holder.dataset.range = payload.range;
    holder.dataset.updated = String(payload.now);
    (payload.latest || []).forEach(function (r) {
      const el = document.querySelector('.latest [data-quantity="' + r.quantity + '"][data-device="' + r.device + '"][data-sensor="' + r.sensor + '"]');
      if (!el) return;
      el.querySelector(".value").textContent = r.text;
      el.querySelector(".ago").textContent = r.ago;
    });
    document.querySelectorAll("a.export").forEach(function (a) {
      a.href = config.export + "?format=" + a.dataset.format + (a.dataset.view ? "&view=" + a.dataset.view : "") + "&start=" + Math.floor(payload.start) + "&end=" + Math.ceil(payload.end);
    });
  }

  // The answer drawn last: an answer that arrives after a newer one, or for a range no longer
  // picked (a poll of the old range still on its way when the picker changed), is not drawn; else
  // a slow poll of "24h" landing after "1y" was picked showed 24 hours until the next slow poll.
  let shown = { range: null, now: -Infinity };

  async function load() {
    const asked = range;
    try {
      const response = await fetch(config.series + "?range=" + asked, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) return;
      const payload = await response.json();
      if (asked !== range || (payload.range === shown.range && payload.now < shown.now)) return;
      shown = { range: payload.range, now: payload.now };
      render(payload);
    } catch (e) { /* try again at the next tick */ }
  }

  function schedule() {
    clearInterval(timer);
    const slow = range === "7d" || range === "30d" || range === "1y";
    timer = setInterval(load, slow ? Math.max(config.poll_ms, 60000) : config.poll_ms);
  }

  document.querySelectorAll('#range input[name="range"]').forEach(function (input) {
    input.addEventListener("change", function () {
      range = input.value;
      const url = new URL(window.location.href);
      url.searchParams.set("range", range);
      window.history.replaceState(null, "", url.toString());
      load();
      schedule();
    });
  });
  load();
  schedule();
  const mapEl = document.getElementById("map");
  if (mapEl) window.Suitcase.map(mapEl, config.map);
  window.addEventListener("pagehide", function () { clearInterval(timer); });
})();
