/* The unboxing page: claim QR labels and a live checklist per Pi. */
"use strict";
(function () {
  const S = window.Suitcase;
  const config = S.config();
  const marks = { ok: "✔", wait: "…", todo: "○" };

  async function showQr(pi, code) {
    const response = await S.post("/api/v1/claims/qr", { claim_code: code, format: "svg" });
    const box = document.querySelector("#pi-" + pi + " .qr");
    if (!response.ok || !box) return;
    // trusted: a fragment our own autoescaping template rendered (same origin)
    box.innerHTML = await response.text();
    box.title = code;
  }

  // Right after registering a kit, its codes can be passed in the fragment (never sent to a server):
  // /kits/1/unboxing#codes=CODE1,CODE2,CODE3
  const codes = (new URLSearchParams(window.location.hash.replace(/^#/, "")).get("codes") || "").split(",");
  codes.forEach(function (code, i) { if (code) showQr(i + 1, code); });

  document.querySelectorAll(".new-label").forEach(function (button) {
    button.addEventListener("click", async function () {
      const pi = button.dataset.pi;
      const response = await S.post("/api/v1/kits/" + config.kit_id + "/pis/" + pi + "/claim-code", {});
      if (response.ok) showQr(pi, (await response.json()).code);
    });
  });

  function render(status) {
    for (const pi of status.pis) {
      const card = document.getElementById("pi-" + pi.pi_index);
      if (!card) continue;
      card.classList.toggle("done", pi.done);
      card.querySelector(".device").textContent = pi.device || "not claimed yet";
      const list = card.querySelector(".checklist");
      list.innerHTML = "";
      for (const step of pi.steps) {
        const li = document.createElement("li");
        li.className = "step " + step.state;
        li.dataset.key = step.key;
        const mark = document.createElement("span");
        mark.className = "mark";
        mark.setAttribute("aria-hidden", "true");
        mark.textContent = marks[step.state] || "○";
        const label = document.createElement("span");
        label.className = "label";
        label.textContent = step.label;
        const detail = document.createElement("span");
        detail.className = "detail small muted";
        detail.textContent = step.detail;
        li.append(mark, label, " ", detail);
        list.appendChild(li);
      }
    }
    document.getElementById("unbox-updated").textContent = "Updated " + new Date().toLocaleTimeString();
  }

  async function poll() {
    try {
      const response = await fetch("/kits/" + config.kit_id + "/unboxing/status", { credentials: "same-origin" });
      if (response.ok) render(await response.json());
    } catch (e) { /* offline for a moment: try again */ }
    window.setTimeout(poll, config.poll_ms || 2000);
  }
  window.setTimeout(poll, config.poll_ms || 2000);
})();
