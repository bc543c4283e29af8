/* Device page: give commands and make config versions through the API, and keep the state,
 * the command history and the versions current by polling the page's live fragment. */
"use strict";
(function () {
  const S = window.Suitcase;
  const config = S.config();
  const live = document.getElementById("device-live");
  const result = document.getElementById("action-result");
  const api = "/api/v1/devices/" + encodeURIComponent(config.device);

  async function refresh() {
    try {
      const response = await fetch(config.live, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) { window.location.href = "/login?next=" + encodeURIComponent(location.pathname); return; }
      if (response.ok) {
        const html = await response.text();
        if (live.contains(document.activeElement) && document.activeElement !== live) return; // keep the keyboard's place
        // trusted: a fragment our own autoescaping template rendered (same origin)
        live.innerHTML = html;
        live.dataset.updated = String(Date.now());
      }
    } catch (e) { /* offline for a moment: try again next tick */ }
  }

  async function give(name, args) {
    result.textContent = "";
    const response = await S.post(api + "/commands", { name: name, args: args });
    if (!response.ok) { result.textContent = await S.errorText(response); result.className = "small error-text"; return; }
    const command = await response.json();
    result.className = "small";
    result.textContent = name + ": " + command.state;
    refresh();
  }

  document.querySelectorAll("button[data-command]").forEach(function (button) {
    button.addEventListener("click", function () { give(button.dataset.command, {}); });
  });
  const logs = document.getElementById("logs-form");
  if (logs) {
    logs.addEventListener("submit", function (event) {
      event.preventDefault();
      give("logs", { lines: Number(logs.lines.value) });
    });
  }
  const resend = document.getElementById("resend-form");
  if (resend) {
    resend.addEventListener("submit", function (event) {
      event.preventDefault();
      const start = new Date(resend.elements.from.value).getTime() / 1000;
      const end = new Date(resend.elements.to.value).getTime() / 1000;
      give("resend", { from: start, to: end });
    });
  }
  const form = document.getElementById("config-form");
  if (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const out = document.getElementById("config-result");
      const sensors = (config.body.sensors || []).map(function (sensor) {
        const row = form.querySelector('tr[data-sensor="' + CSS.escape(sensor.name) + '"]');
        const kind = row.querySelector('select[name="filter"]').value;
        const changed = Object.assign({}, sensor, {
          enabled: row.querySelector('input[name="enabled"]').checked,
          interval_s: Number(row.querySelector('input[name="interval_s"]').value),
          filter: kind ? { kind: kind, window: Number(row.querySelector('input[name="window"]').value) } : null,
        });
        return changed;
      });
      const sections = { sampling: { publish_interval_s: Number(form.publish_interval_s.value) }, sensors: sensors };
      const response = await S.post(api + "/config/versions", { sections: sections, note: form.note.value });
      if (!response.ok) { out.textContent = await S.errorText(response); out.className = "small error-text"; return; }
      const version = await response.json();
      config.body = version.body;
      out.className = "small";
      out.textContent = config.saved.replace("{version}", version.version);
      refresh();
    });
  }
  const timer = setInterval(refresh, config.poll_ms || 2000);
  window.addEventListener("pagehide", function () { clearInterval(timer); });
})();
