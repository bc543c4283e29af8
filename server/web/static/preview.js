/* Use-case preview dashboard: one panel per quantity, with thresholds; data from a public deployment. */
"use strict";
(function () {
  const config = window.Suitcase.config();
  function empty(block) { return Object.assign({}, block, { series: [] }); }
  async function run() {
    let byQuantity = {};
    if (config.preview) {
      try {
        const r = await fetch(config.preview, { cache: "no-store" });
        if (r.ok) (await r.json()).quantities.forEach(function (b) { byQuantity[b.quantity] = b; });
      } catch (e) { byQuantity = {}; }
    }
    config.panels.forEach(function (panel) {
      const fig = document.querySelector('#charts figure[data-quantity="' + panel.quantity + '"]');
      const plot = fig.querySelector(".plot");
      const block = byQuantity[panel.quantity];
      if (block && block.series.length) {
        block.thresholds = panel.thresholds;
        new window.Suitcase.Chart(plot, block, { tz: config.tz });
      } else {
        const p = document.createElement("p");
        p.className = "nodata";
        p.textContent = config.nodata + (panel.thresholds.length ? " · " + panel.thresholds.map((x) => x.label).join(" · ") : "");
        plot.appendChild(p);
        plot.style.minHeight = "0";
        void empty;
      }
    });
  }
  run();
})();
