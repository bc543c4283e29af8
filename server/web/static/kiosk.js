/* Kiosk: one slide per deployment, built once and updated in place (numbers as text, charts by
 * setData), rotating every rotate_ms; data refreshed every refresh_ms. Nothing is created per
 * rotation, so hours of rotating do not grow the heap. ?rotate_ms=20 runs it compressed. */
"use strict";
(function () {
  const S = window.Suitcase;
  const config = S.config();
  const msg = config.messages;
  const params = new URLSearchParams(window.location.hash.slice(1));
  const token = params.get("token") || new URLSearchParams(window.location.search).get("token");
  const holder = document.getElementById("slides");
  const dots = document.getElementById("dots");
  const error = document.getElementById("kiosk-error");
  const state = (window.kiosk = { rotations: 0, current: -1, slides: [], refreshes: 0 });

  function fail(text) { error.textContent = text; error.hidden = false; }
  if (!token) { fail(msg.no_token); return; }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function buildSlide(dep) {
    const section = el("section", "slide");
    section.hidden = true;
    section.dataset.deployment = String(dep.id);
    const head = el("div", "kiosk-head");
    const h = el("h2", null, dep.name);
    h.style.fontSize = "4.2vh"; h.style.margin = "0";
    head.appendChild(h);
    const sub = el("p", "sub");
    head.appendChild(sub);
    section.appendChild(head);
    const numbers = el("dl", "numbers");
    section.appendChild(numbers);
    const charts = el("div", "kcharts");
    section.appendChild(charts);
    holder.appendChild(section);
    const dot = el("li");
    dots.appendChild(dot);
    return { id: dep.id, section: section, sub: sub, numbers: numbers, chartsEl: charts, charts: {}, numberEls: {}, dep: dep, dot: dot };
  }

  function updateSlide(slide, dep) {
    slide.dep = dep;
    slide.sub.textContent = dep.org + (dep.use_case ? " · " + dep.use_case : "") + (dep.simulated ? " · " + msg.simulated : "");
    const seen = {};
    dep.latest.forEach(function (r) {
      const key = r.device + "/" + r.sensor + "/" + r.quantity;
      seen[key] = true;
      let entry = slide.numberEls[key];
      if (!entry) {
        const box = el("div");
        box.dataset.quantity = r.quantity;
        const dt = el("dt", null, r.label);
        const dd = el("dd");
        const value = el("span", "value");
        const unit = el("span", "unit");
        dd.appendChild(value); dd.appendChild(document.createTextNode(" ")); dd.appendChild(unit);
        box.appendChild(dt); box.appendChild(dd);
        slide.numbers.appendChild(box);
        entry = slide.numberEls[key] = { box: box, value: value, unit: unit };
      }
      entry.value.textContent = r.text;
      entry.unit.textContent = r.unit;
    });
    Object.keys(slide.numberEls).forEach(function (k) { if (!seen[k]) { slide.numberEls[k].box.remove(); delete slide.numberEls[k]; } });
    slide.pending = dep.charts;
    if (!slide.section.hidden) drawCharts(slide);
  }

  function drawCharts(slide) {
    const blocks = slide.pending;
    if (!blocks) return;
    slide.pending = null;
    const seen = {};
    blocks.forEach(function (block) {
      seen[block.quantity] = true;
      let entry = slide.charts[block.quantity];
      if (!entry) {
        const box = el("div", "kchart");
        box.dataset.quantity = block.quantity;
        box.appendChild(el("h3", null, block.label + (block.unit ? " (" + block.unit + ")" : "")));
        const plot = el("div", "kplot");
        box.appendChild(plot);
        slide.chartsEl.appendChild(box);
        const chart = new S.Chart(plot, block, { dark: true, noLegend: true, tz: slide.dep.tz, height: function (e) { return Math.max(120, e.clientHeight - 8); } });
        entry = slide.charts[block.quantity] = { box: box, chart: chart };
      } else {
        entry.chart.update(block);
      }
    });
    Object.keys(slide.charts).forEach(function (q) { if (!seen[q]) { slide.charts[q].chart.destroy(); slide.charts[q].box.remove(); delete slide.charts[q]; } });
  }

  function show(index) {
    if (!state.slides.length) return;
    const previous = state.slides[state.current];
    if (previous) { previous.section.hidden = true; previous.dot.className = ""; }
    state.current = index % state.slides.length;
    const slide = state.slides[state.current];
    slide.section.hidden = false;
    slide.dot.className = "on";
    drawCharts(slide);
    Object.keys(slide.charts).forEach(function (q) { slide.charts[q].chart.resize(); });
    document.body.dataset.deployment = String(slide.id);
  }

  function rotate() {
    show(state.current + 1);
    state.rotations += 1;
    document.body.dataset.rotations = String(state.rotations);
  }

  async function refresh() {
    try {
      const response = await fetch("/kiosk/data", { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
      if (response.status === 401) { fail(msg.bad_token); return; }
      if (!response.ok) return;
      const data = await response.json();
      error.hidden = true;
      data.deployments.forEach(function (dep) {
        let slide = state.slides.find((s) => s.id === dep.id);
        if (!slide) { slide = buildSlide(dep); state.slides.push(slide); }
        updateSlide(slide, dep);
      });
      state.refreshes += 1;
      // In the zone the clock beside it shows (the deployment's), not the browser's.
      const shown = state.slides[Math.max(state.current, 0)];
      document.getElementById("updated").textContent = msg.updated + " " + new Date().toLocaleTimeString(document.documentElement.lang, { timeZone: shown ? shown.dep.tz : undefined, hourCycle: "h23" });
      if (state.current < 0) show(0);
      document.body.dataset.ready = "true";
    } catch (e) { /* keep showing the last data */ }
  }

  function tick() {
    const dep = state.slides[state.current] && state.slides[state.current].dep;
    const tz = dep ? dep.tz : undefined;
    document.getElementById("clock").textContent = new Date().toLocaleTimeString(document.documentElement.lang, { timeZone: tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  }

  document.getElementById("fullscreen").addEventListener("click", function () {
    if (document.documentElement.requestFullscreen) document.documentElement.requestFullscreen().catch(function () {});
  });
  refresh();
  setInterval(refresh, config.refresh_ms);
  setInterval(rotate, config.rotate_ms);
  setInterval(tick, 1000);
  tick();
})();
