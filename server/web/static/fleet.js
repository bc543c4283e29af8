/* Fleet page: re-fetch the counts and the table every poll_ms and swap them in place. */
"use strict";
(function () {
  const config = window.Suitcase.config();
  const live = document.getElementById("fleet-live");
  let timer = null;
  async function refresh() {
    try {
      const response = await fetch(config.live, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) { window.location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); return; }
      if (response.ok) {
        const html = await response.text();
        if (live.contains(document.activeElement)) return; // do not pull focus from under the keyboard
        // trusted: a fragment our own autoescaping template rendered (same origin)
        live.innerHTML = html;
        live.dataset.updated = String(Date.now());
      }
    } catch (e) { /* offline for a moment: try again next tick */ }
  }
  timer = setInterval(refresh, config.poll_ms || 5000);
  window.addEventListener("pagehide", function () { clearInterval(timer); });
})();
