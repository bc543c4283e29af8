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
      // What a person reads first (fill level, power, counts per hour) above; the raw ones in a
      // closed details, one click away, when the use-case names headline quantities.
      const raw = payload.quantities.filter(function (b) { return b.headline === false; });
      let rawHolder = null;
      if (raw.length && raw.length < payload.quantities.length) {
        const box = document.createElement("details");
        box.className = "raw";
        const summary = document.createElement("summary");
        summary.textContent = holder.dataset.rawLabel.replace("{n}", String(raw.length));
        rawHolder = document.createElement("div");
        rawHolder.className = "charts raw-charts";
        box.appendChild(summary);
        box.appendChild(rawHolder);
        holder.after(box);
      }
      payload.quantities.forEach(function (block) {
        const into = rawHolder && block.headline === false ? rawHolder : holder;
        const f = window.Suitcase.chartFigure(into, block);
        new window.Suitcase.Chart(f.plot, block, { tz: holder.dataset.tz });
      });
      holder.dataset.updated = String(payload.now);
    } catch (e) { /* the figures above stand on their own */ }
  }

  if (window.Suitcase.Chart) document.querySelectorAll(".station .charts[data-series]").forEach(chart);
})();
