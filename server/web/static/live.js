// IoT Suitcase live readings: polls the JSON API and updates the device cards and uPlot charts.
(() => {
  "use strict";

  const cfg = JSON.parse(document.getElementById("page-config").textContent);
  const cards = document.getElementById("cards");
  const empty = document.getElementById("empty");
  const count = document.getElementById("device-count");
  const lastUpdate = document.getElementById("last-update");
  const connection = document.getElementById("connection");
  // Colour-blind-safe palette (Okabe-Ito), dark enough for lines on white.
  const COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"];
  const CHARTED = new Set(["temperature", "humidity", "pressure"]);
  const devices = new Map(); // device id -> { card, charts: Map(quantity -> chart), headline }
  let window_ = [0, 0]; // the chart's x range [start, end], server time

  const quantity = (name) => cfg.quantities[name] || { label: name, unit: "", order: 999 };
  // What the device's use-case names is read first, in its order; the raw readings after.
  const rank = (entry, name) => {
    const i = entry.headline ? entry.headline.indexOf(name) : -1;
    return i >= 0 ? i : 1000 + quantity(name).order;
  };
  const isHeadline = (entry, name) => !entry.headline || entry.headline.includes(name);
  // Charted: the climate quantities, and what the use-case names first that is a series (not a sum).
  const isCharted = (entry, name) =>
    CHARTED.has(name) || (!!entry.headline && entry.headline.includes(name) && !quantity(name).summed);

  // Size the y axis to its longest tick label (uPlot's fixed default clips "1,013.25").
  function axisWidth(u, values, axisIdx, cycleNum) {
    const axis = u.axes[axisIdx];
    let size = axis.ticks.size + axis.gap;
    const longest = (values || []).reduce((a, v) => (v.length > a.length ? v : a), "");
    if (longest !== "") {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / devicePixelRatio;
    }
    // A later layout cycle may only widen it: its labels are the ones drawn, and returning the
    // first cycle's size (uPlot's example) clipped "29.25" when they grew; never narrowing lets the
    // cycles converge.
    const wanted = Math.ceil(size) + 4;
    return cycleNum > 1 ? Math.max(axis._size || 0, wanted) : wanted;
  }

  // The times just after each gap longer than 3 typical steps of ``times`` (sorted): a null there
  // breaks the line, so a Pi that was away shows as a gap, not as a straight line across it
  // ("gaps stay gaps", as on the deployment charts).
  function gapMarks(times) {
    const steps = [];
    for (let i = 1; i < times.length; i++) steps.push(times[i] - times[i - 1]);
    if (steps.length < 2) return [];
    const typical = steps.slice().sort((a, b) => a - b)[Math.floor(steps.length / 2)];
    if (!(typical > 0)) return [];
    const marks = [];
    for (let i = 1; i < times.length; i++) {
      if (times[i] - times[i - 1] > 3 * typical) marks.push(times[i - 1] + typical);
    }
    return marks;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function ago(seconds) {
    if (seconds < 1) return "just now";
    if (seconds < 90) return `${Math.round(seconds)} s ago`;
    if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} days ago`;
  }

  function number(value, whole = false) {
    const digits = whole ? 0 : Math.abs(value) >= 10 ? 1 : 2; // a count is whole
    return value.toLocaleString("en", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
      useGrouping: false,
    });
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
    return response.json();
  }

  function cardFor(id) {
    let entry = devices.get(id);
    if (entry) return entry;
    let card = cards.querySelector(`article[data-device="${CSS.escape(id)}"]`);
    if (!card) {
      card = el(
        "article",
        { class: "card", "data-device": id, "aria-labelledby": `device-${id}` },
        el("header", { class: "card-head" }, el("h2", { id: `device-${id}` }, id), el("span", { class: "badge" })),
        el("p", { class: "meta" }),
        el("dl", { class: "latest" }),
        el(
          "details",
          { class: "raw", hidden: "" },
          el("summary", {}, "Raw readings (", el("span", { class: "raw-count" }, "0"), ")"),
          el("dl", { class: "latest raw-latest" }),
        ),
        el("div", { class: "charts" }),
      );
      cards.append(card);
    }
    entry = { card, charts: new Map(), headline: null };
    devices.set(id, entry);
    return entry;
  }

  function renderSummary(entry, device, now) {
    const badge = entry.card.querySelector(".badge");
    badge.className = `badge ${device.stale ? "stale" : "live"}`;
    badge.textContent = device.stale ? "Stale" : "Reporting";
    badge.title = device.stale ? `no reading for over ${Math.round(cfg.stale_after_s || 0)} s` : "";
    const meta = entry.card.querySelector(".meta");
    meta.replaceChildren(
      "organisation ",
      el("strong", {}, device.org),
      ` · ${device.readings.toLocaleString("en")} readings · last reading `,
      el("time", { datetime: device.last_seen_iso }, ago(now - device.last_seen)),
    );
  }

  function renderLatest(entry, latest, now) {
    entry.headline = latest.headline || null;
    const order = (a, b) => rank(entry, a.quantity) - rank(entry, b.quantity) || a.sensor.localeCompare(b.sensor);
    const metric = (r) => {
      const q = quantity(r.quantity);
      return el(
        "div",
        { class: "metric", "data-quantity": r.quantity, "data-sensor": r.sensor },
        el("dt", {}, `${q.label} `, el("span", { class: "sensor" }, r.sensor)),
        el(
          "dd",
          {},
          el("span", { class: "value" }, number(r.value, q.summed)),
          " ",
          el("span", { class: "unit" }, q.unit),
          el("time", { class: "ago", datetime: r.time_iso }, ago(now - r.time)),
        ),
      );
    };
    const readings = latest.readings.slice().sort(order);
    const raw = readings.filter((r) => !isHeadline(entry, r.quantity));
    entry.card.querySelector(".latest").replaceChildren(
      ...readings.filter((r) => isHeadline(entry, r.quantity)).map(metric),
    );
    entry.card.querySelector(".raw-latest").replaceChildren(...raw.map(metric));
    entry.card.querySelector(".raw-count").textContent = String(raw.length);
    entry.card.querySelector(".raw").hidden = raw.length === 0;
  }

  // Pad the data's range; a flat line gets a small band around it instead of uPlot's 0..2x.
  function yRange(u, min, max) {
    if (min == null || max == null) return [0, 1];
    const span = max - min;
    const pad = span > 0 ? span * 0.1 : Math.max(Math.abs(min) * 0.005, 0.5);
    return [min - pad, max + pad];
  }

  function chartFor(entry, name, sensors) {
    let chart = entry.charts.get(name);
    const key = sensors.join(",");
    if (chart && chart.key === key) return chart;
    const q = quantity(name);
    const unit = q.unit ? ` (${q.unit})` : "";
    let figure = chart ? chart.figure : null;
    if (chart) chart.plot.destroy();
    if (!figure) {
      const plotBox = el("div", {
        class: "plot",
        role: "img",
        "aria-label": `Line chart of ${q.label.toLowerCase()}${unit} over the last ${cfg.window_s / 60} minutes`,
      });
      figure = el(
        "figure",
        { class: "chart", "data-quantity": name },
        el("figcaption", {}, `${q.label}${unit}, last ${cfg.window_s / 60} min`),
        plotBox,
      );
      const box = entry.card.querySelector(".charts");
      const after = [...box.children].find((f) => rank(entry, f.dataset.quantity) > rank(entry, name));
      box.insertBefore(figure, after || null);
    }
    const plotBox = figure.querySelector(".plot");
    plotBox.replaceChildren();
    const width = Math.max(plotBox.clientWidth, 240);
    const opts = {
      width,
      height: 170,
      legend: { show: sensors.length > 1 },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true, range: () => window_ }, y: { range: yRange } },
      axes: [
        { stroke: "#4a5360", grid: { stroke: "#e3e7eb" }, ticks: { stroke: "#c4cad1" } },
        {
          stroke: "#4a5360",
          grid: { stroke: "#e3e7eb" },
          ticks: { stroke: "#c4cad1" },
          size: axisWidth,
        },
      ],
      series: [
        {},
        ...sensors.map((sensor, i) => ({
          label: sensor,
          stroke: COLOURS[i % COLOURS.length],
          width: 2,
          spanGaps: false, // null breaks the line; undefined (another sensor's time) is joined
          points: { show: false },
          value: (u, v) => (v == null ? "–" : `${number(v)} ${q.unit}`),
        })),
      ],
    };
    const plot = new uPlot(opts, [[], ...sensors.map(() => [])], plotBox);
    plotBox.uplot = plot; // for the browser tests, which check what is drawn
    chart = { figure, plot, key };
    entry.charts.set(name, chart);
    return chart;
  }

  function renderCharts(entry, readings) {
    const groups = new Map(); // quantity -> sensor -> Map(time -> value)
    for (const r of readings.readings) {
      if (!isCharted(entry, r.quantity)) continue;
      if (!groups.has(r.quantity)) groups.set(r.quantity, new Map());
      const series = groups.get(r.quantity);
      if (!series.has(r.sensor)) series.set(r.sensor, new Map());
      series.get(r.sensor).set(r.time, r.value);
    }
    for (const [name, series] of groups) {
      const sensors = [...series.keys()].sort();
      const chart = chartFor(entry, name, sensors);
      const own = new Map(sensors.map((s) => [s, [...series.get(s).keys()].sort((a, b) => a - b)]));
      const gaps = new Map(sensors.map((s) => [s, new Set(gapMarks(own.get(s)))]));
      const times = [...new Set(sensors.flatMap((s) => [...own.get(s), ...gaps.get(s)]))].sort((a, b) => a - b);
      const data = [
        times,
        ...sensors.map((s) => times.map((t) => (gaps.get(s).has(t) ? null : series.get(s).get(t)))),
      ];
      chart.plot.setData(data);
    }
    for (const [name, chart] of entry.charts) {
      if (!groups.has(name)) chart.plot.setData([[], ...chart.key.split(",").map(() => [])]);
    }
  }

  async function refresh() {
    const list = await getJSON(`${cfg.api}/devices`);
    const now = list.now;
    cfg.stale_after_s = list.stale_after_s;
    window_ = [now - cfg.window_s, now];
    const start = encodeURIComponent(now - cfg.window_s);
    const results = await Promise.all(
      list.data.map((d) => {
        const base = `${cfg.api}/devices/${encodeURIComponent(d.device)}`;
        return Promise.all([getJSON(`${base}/latest`), getJSON(`${base}/readings?start=${start}`)]);
      }),
    );
    const seen = new Set();
    list.data.forEach((device, i) => {
      const [latest, readings] = results[i];
      const entry = cardFor(device.device);
      seen.add(device.device);
      cards.append(entry.card); // keeps the API's order (org, device); a no-op when already in place
      renderSummary(entry, device, now);
      renderLatest(entry, latest, now);
      renderCharts(entry, readings);
    });
    for (const [id, entry] of devices) {
      if (!seen.has(id)) {
        entry.card.remove();
        devices.delete(id);
      }
    }
    for (const stray of cards.querySelectorAll("article[data-device]")) {
      if (!seen.has(stray.dataset.device)) stray.remove();
    }
    const n = list.count;
    count.textContent = `${n} device${n === 1 ? "" : "s"}`;
    empty.hidden = n > 0;
    const stamp = new Date();
    lastUpdate.dateTime = stamp.toISOString();
    lastUpdate.textContent = stamp.toLocaleTimeString();
  }

  async function poll() {
    try {
      await refresh();
      connection.hidden = true;
    } catch (error) {
      connection.textContent = `Cannot update (${error.message}): retrying every ${cfg.poll_ms / 1000} s.`;
      connection.hidden = false;
    } finally {
      setTimeout(poll, cfg.poll_ms);
    }
  }

  const resize = new ResizeObserver(() => {
    for (const entry of devices.values()) {
      for (const chart of entry.charts.values()) {
        const width = Math.max(chart.figure.querySelector(".plot").clientWidth, 240);
        if (Math.abs(chart.plot.width - width) > 1) chart.plot.setSize({ width, height: 170 });
      }
    }
  });
  resize.observe(cards);

  poll();
})();
