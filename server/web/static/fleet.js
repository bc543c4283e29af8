/* Fleet page: re-fetch the counts and the table every poll_ms and swap them in place; a global
 * admin starts and stops agent rollouts. */
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
  // Global admins: start an agent rollout, stop the running one (the API does the checking).
  const S = window.Suitcase;
  const form = document.getElementById("rollout-form");
  const result = document.getElementById("rollout-result");
  async function answer(response, done) {
    if (!response.ok) { result.textContent = await S.errorText(response); result.className = "small error-text"; return; }
    const rollout = await response.json();
    result.className = "small";
    result.textContent = done + " " + rollout.version + ": " + rollout.state;
    refresh();
  }
  const upload = document.getElementById("release-form");
  if (upload) {
    upload.addEventListener("submit", async function (event) {
      event.preventDefault();
      const file = upload.wheel.files[0];
      if (!file) return;
      const response = await fetch("/api/v1/agent-releases?filename=" + encodeURIComponent(file.name), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/octet-stream", "X-CSRF-Token": await S.csrf() },
        body: file,
      });
      if (!response.ok) { result.textContent = await S.errorText(response); result.className = "small error-text"; return; }
      const release = await response.json();
      result.className = "small";
      result.textContent = "release " + release.version + " sha256 " + release.sha256;
      window.location.reload();  // the version list of the rollout form
    });
  }
  if (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const canaries = form.canaries.value.split(/[\s,]+/).filter(Boolean);
      const body = { version: form.version.value, share_percent: Number(form.share_percent.value), deadline_s: Number(form.deadline_s.value) };
      if (canaries.length) body.canaries = canaries;
      answer(await S.post("/api/v1/rollouts", body), "rollout");
    });
  }
  live.addEventListener("click", async function (event) {
    const button = event.target.closest("button[data-stop-rollout]");
    if (!button || !result) return;
    answer(await S.post("/api/v1/rollouts/" + encodeURIComponent(button.dataset.stopRollout) + "/stop", {}), "rollout");
  });
  timer = setInterval(refresh, config.poll_ms || 5000);
  window.addEventListener("pagehide", function () { clearInterval(timer); });
})();
