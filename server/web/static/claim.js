/* The claim page: the code from the URL fragment, log in if needed, pick a deployment, bind. */
"use strict";
(function () {
  const S = window.Suitcase;
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const code = params.get("code") || "";
  const form = document.getElementById("claim-form");
  const error = document.getElementById("claim-error");
  const done = document.getElementById("claim-done");
  const select = document.getElementById("claim-deployment");
  if (!code) {
    document.getElementById("claim-nocode").hidden = false;
    return;
  }
  document.getElementById("claim-code").textContent = code;

  async function start() {
    const me = await fetch("/api/v1/auth/me", { credentials: "same-origin" });
    if (!me.ok) {
      window.location.href = "/login?next=" + encodeURIComponent("/claim#code=" + code);
      return;
    }
    const reply = await fetch("/api/v1/deployments?limit=100", { credentials: "same-origin" });
    const body = reply.ok ? await reply.json() : { data: [] };
    const now = Date.now() / 1000;
    const active = (body.data || []).filter((d) => d.ends_at === null || d.ends_at > now);
    for (const d of active) {
      const option = document.createElement("option");
      option.value = d.id;
      option.textContent = d.name + (d.address ? " (" + d.address + ")" : "");
      select.appendChild(option);
    }
    document.getElementById("claim-none").hidden = active.length > 0;
    document.getElementById("claim-confirm").disabled = active.length === 0;
    form.hidden = false;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    error.hidden = true;
    const response = await S.post("/api/v1/claims/bind", { claim_code: code, deployment_id: Number(select.value) });
    if (!response.ok) {
      error.textContent = await S.errorText(response);
      error.hidden = false;
      return;
    }
    const bound = await response.json();
    form.hidden = true;
    done.innerHTML = "";
    const text = document.createElement("p");
    text.textContent = "Done: Pi " + bound.pi_index + " is now device " + bound.device_id +
      ". It picks up its settings within a minute. ";
    const link = document.createElement("a");
    link.href = "/kits/" + bound.kit_id + "/unboxing";
    link.textContent = "Follow its checklist";
    text.appendChild(link);
    done.appendChild(text);
    done.dataset.device = bound.device_id;
    done.hidden = false;
  });
  start();
})();
