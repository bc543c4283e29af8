/* Public pages: the map, and on a deployment or use-case page a 7-day chart per station, read
 * from the open /public/deployments/{id}/series endpoint (device ids are not in it). */
"use strict";
(function () {
  const config = window.Suitcase.config();
  window.Suitcase.map(document.getElementById("map"), config.map);

  async function chart(holder) {
    const status = holder.parentElement.querySelector(".chart-status");
    try {
      const response = await fetch(holder.dataset.series, { cache: "no-store" });
      if (!response.ok) return;
      const payload = await response.json();
      if (!payload.quantities.length) { status.textContent = holder.dataset.nodata; return; }
      payload.quantities.forEach(function (block) {
        const f = window.Suitcase.chartFigure(holder, block);
        new window.Suitcase.Chart(f.plot, block, { tz: holder.dataset.tz });
      });
      holder.dataset.updated = String(payload.now);
    } catch (e) { /* the figures above stand on their own */ }
  }

  if (window.Suitcase.Chart) document.querySelectorAll(".station .charts[data-series]").forEach(chart);
})();
