/* Charts of a deployment's quantities (uPlot), with the use-case's threshold lines drawn on them.
 * Suitcase.Chart(el, block, opts): block = {quantity, label, unit, thresholds, series: [{device,
 * sensor, times, values}]}; chart.update(block) re-uses the plot (no new canvas) when the series
 * are the same, so a page that refreshes for hours does not grow. Suitcase.chartFigure(holder,
 * block) makes the captioned figure a chart goes in. */
"use strict";
(function () {
  const Suitcase = (window.Suitcase = window.Suitcase || {});
  const PALETTE = ["#0b5cad", "#b45309", "#047857", "#9d174d", "#5b21b6", "#374151"];

  /* [times, values] with a null after each gap longer than 3 typical steps, so the line breaks
   * there instead of drawing a straight line across hours without data ("gaps stay gaps"). */
  function withGaps(times, values) {
    if (times.length < 3) return [times, values];
    const steps = [];
    for (let i = 1; i < times.length; i++) steps.push(times[i] - times[i - 1]);
    const typical = steps.slice().sort((a, b) => a - b)[Math.floor(steps.length / 2)];
    if (!(typical > 0)) return [times, values];
    const t = [times[0]];
    const v = [values[0]];
    for (let i = 1; i < times.length; i++) {
      if (times[i] - times[i - 1] > 3 * typical) { t.push(times[i - 1] + typical); v.push(null); }
      t.push(times[i]);
      v.push(values[i]);
    }
    return [t, v];
  }

  function align(block) {
    const tables = block.series.map((s) => withGaps(s.times, s.values));
    if (tables.length === 1) return [tables[0][0], tables[0][1]];
    return uPlot.join(tables);
  }

  function thresholdPlugin(block, dark) {
    return {
      hooks: {
        draw: [
          function (u) {
            const ctx = u.ctx;
            (block.thresholds || []).forEach(function (line) {
              const y = Math.round(u.valToPos(line.value, "y", true));
              if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
              ctx.save();
              ctx.strokeStyle = dark ? "#fbbf24" : "#b91c1c";
              ctx.lineWidth = 1.5 * devicePixelRatio;
              ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
              ctx.beginPath();
              ctx.moveTo(u.bbox.left, y);
              ctx.lineTo(u.bbox.left + u.bbox.width, y);
              ctx.stroke();
              ctx.setLineDash([]);
              ctx.fillStyle = dark ? "#fde68a" : "#7f1d1d";
              ctx.font = 12 * devicePixelRatio + "px system-ui, sans-serif";
              ctx.textAlign = "right";
              ctx.fillText(line.label, u.bbox.left + u.bbox.width - 4, y - 4 * devicePixelRatio);
              ctx.restore();
            });
          },
        ],
      },
    };
  }

  function yRange(block) {
    return function (u, min, max) {
      let lo = min, hi = max;
      (block.thresholds || []).forEach(function (t) { lo = Math.min(lo, t.value); hi = Math.max(hi, t.value); });
      if (block.summed && lo != null) lo = Math.min(lo, 0); // bars of counts stand on zero
      if (lo == null || hi == null || !isFinite(lo) || !isFinite(hi)) return [0, 1];
      const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.05 || 1;
      // Counts never go below zero: their axis starts at zero, not a padding under it.
      return [block.summed && lo >= 0 ? 0 : lo - pad, hi + pad];
    };
  }

  // 24-hour clock and day-month dates in the organisation's time zone, whatever the browser's locale.
  function timeLabels(tz) {
    const lang = document.documentElement.lang || "en";
    const time = new Intl.DateTimeFormat(lang, { timeZone: tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    const day = new Intl.DateTimeFormat(lang, { timeZone: tz, day: "numeric", month: "short" });
    return function (u, splits) {
      const span = splits.length > 1 ? splits[splits.length - 1] - splits[0] : 0;
      let previous = null;
      return splits.map(function (ts) {
        const d = new Date(ts * 1e3);
        if (span < 86400) return time.format(d);
        // Over days: the date where a day starts, the time between (ticks 12 h apart read
        // "Nov 30, Nov 30, Dec 1", as if the axis repeated a day; daily ticks of 3 days read
        // "00:00, 00:00, 00:00").
        const today = day.format(d);
        const label = today === previous ? time.format(d) : today;
        previous = today;
        return label;
      });
    };
  }

  function options(block, width, height, opts) {
    const dark = !!opts.dark;
    const axis = { stroke: dark ? "#e2e8f0" : "#1b1f24", grid: { stroke: dark ? "#334155" : "#e5e7eb" }, ticks: { stroke: dark ? "#475569" : "#d1d5db" } };
    const series = [{}].concat(block.series.map(function (s, i) {
      const stroke = dark ? ["#38bdf8", "#fbbf24", "#34d399", "#f472b6"][i % 4] : PALETTE[i % PALETTE.length];
      const line = { label: block.series.length > 1 ? s.device + " " + s.sensor : block.label, stroke: stroke, width: dark ? 3 : 2, spanGaps: false, points: { show: false } };
      // Counts are sums per window: bars, one per window, never a line through their mean.
      if (block.summed && uPlot.paths && uPlot.paths.bars) { line.paths = uPlot.paths.bars({ size: [0.8, 48] }); line.fill = stroke; }
      return line;
    }));
    return {
      width: width, height: height, series: series,
      scales: { x: { time: true }, y: { range: yRange(block) } },
      axes: [Object.assign({ values: timeLabels(opts.tz) }, axis), Object.assign({ size: 60, label: block.unit || undefined }, axis)],
      legend: { show: !opts.noLegend },
      cursor: { drag: { x: false, y: false } },
      tzDate: opts.tz ? function (ts) { return uPlot.tzDate(new Date(ts * 1e3), opts.tz); } : undefined,
      plugins: [thresholdPlugin(block, dark)],
    };
  }

  function Chart(el, block, opts) {
    this.el = el;
    this.opts = opts || {};
    this.block = block;
    this.plot = null;
    this.key = "";
    this.update(block);
    const self = this;
    if (window.ResizeObserver) {
      this.observer = new ResizeObserver(function () { self.resize(); });
      this.observer.observe(el);
    }
  }
  Chart.prototype.size = function () {
    const width = Math.max(200, Math.floor(this.el.clientWidth || 600));
    const height = this.opts.height ? this.opts.height(this.el) : 220;
    return [width, height];
  };
  Chart.prototype.resize = function () {
    if (!this.plot) return;
    const s = this.size();
    if (s[0] !== this.plot.width || s[1] !== this.plot.height) this.plot.setSize({ width: s[0], height: s[1] });
  };
  Chart.prototype.update = function (block) {
    this.block = block;
    const key = block.series.map((s) => s.device + "/" + s.sensor).join(",") + "|" + JSON.stringify(block.thresholds || []);
    const data = align(block);
    if (this.plot && key === this.key) {
      this.plot.setData(data);
    } else {
      if (this.plot) this.plot.destroy();
      const s = this.size();
      const el = this.el;
      const o = options(block, s[0], s[1], this.opts);
      // The y axis's lower end, for tests and scripts reading the page (counts must start at zero).
      // The axes' ends, for tests and scripts reading the page (counts must start at zero; the x
      // axis spans the range asked for).
      o.hooks = { setScale: [function (u, key) {
        if (key === "y") el.dataset.yMin = String(u.scales.y.min);
        if (key === "x") { el.dataset.xMin = String(u.scales.x.min); el.dataset.xMax = String(u.scales.x.max); }
      }] };
      this.plot = new uPlot(o, data, this.el);
      this.key = key;
      const canvas = this.el.querySelector("canvas");
      if (canvas) { canvas.setAttribute("role", "img"); canvas.setAttribute("aria-label", block.label); }
    }
    // The x axis spans the range asked for (block.start..end), not only the times with readings:
    // a quarter of an hour of readings in a 7-day chart is drawn as a quarter of an hour. Without a
    // range, one point in time (a day's count on its first day) gets half a day each side, not
    // the span of years uPlot gives a lone time.
    const times = data[0];
    if (typeof block.start === "number" && typeof block.end === "number" && block.end > block.start) {
      let lo = block.start;
      let hi = block.end;
      if (times.length) {
        // Bars (sums per hour or day) stand on their window's start: half a window each side
        // keeps the first and last whole (a day's bar begins before a 24-hour range does).
        const half = block.summed ? (times.length > 1 ? times[1] - times[0] : 86400) / 2 : 0;
        lo = Math.min(lo, times[0] - half);
        hi = Math.max(hi, times[times.length - 1] + half);
      }
      this.plot.setScale("x", { min: lo, max: hi });
    } else if (times.length === 1) {
      this.plot.setScale("x", { min: times[0] - 43200, max: times[0] + 43200 });
    }
    this.el.dataset.points = String(data[0].length);
  };
  Chart.prototype.destroy = function () {
    if (this.observer) this.observer.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
  };
  Suitcase.Chart = Chart;

  /* A <figure class="chart"> with the block's label and unit as caption, appended to holder;
   * returns {fig, plot}: plot is the element to give Suitcase.Chart. */
  Suitcase.chartFigure = function (holder, block) {
    const fig = document.createElement("figure");
    fig.className = "chart";
    fig.dataset.quantity = block.quantity;
    const cap = document.createElement("figcaption");
    cap.textContent = block.label + (block.unit ? " (" + block.unit + ")" : "");
    const plot = document.createElement("div");
    plot.className = "plot";
    fig.appendChild(cap);
    fig.appendChild(plot);
    holder.appendChild(fig);
    return { fig: fig, plot: plot };
  };
})();
