/* "Deploy this": create the deployment through the API, then bind Pis by claim code or make an
 * enrollment code for `suitcase edge enroll`. */
"use strict";
(function () {
  const S = window.Suitcase;
  const config = S.config();
  const form = document.getElementById("deploy-form");
  if (!form) return;
  const error = document.getElementById("deploy-error");
  const enroll = document.getElementById("enroll");
  let deployment = null;
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    error.hidden = true;
    const body = {
      org_id: Number(form.org_id.value), name: form.name.value, use_case_id: config.use_case_id,
      address: form.address.value, environment: form.environment.value,
      public: form.public.checked, private_address: form.private_address.checked,
    };
    if (form.kit_id.value) body.kit_id = Number(form.kit_id.value);
    if (form.lat.value !== "" && form.lon.value !== "") { body.lat = Number(form.lat.value); body.lon = Number(form.lon.value); }
    const response = await S.post("/api/v1/deployments", body);
    if (!response.ok) { error.textContent = await S.errorText(response); error.hidden = false; return; }
    deployment = await response.json();
    document.getElementById("enroll-created").textContent = config.created.replace("{name}", deployment.name);
    document.getElementById("open-deployment").href = "/deployments/" + deployment.id;
    form.hidden = true;
    enroll.hidden = false;
    document.getElementById("enroll-h").focus();
  });
  document.getElementById("bind-form").addEventListener("submit", async function (event) {
    event.preventDefault();
    const out = document.getElementById("bind-result");
    const response = await S.post("/api/v1/claims/bind", { claim_code: event.target.claim_code.value, deployment_id: deployment.id });
    out.textContent = response.ok ? config.bound.replace("{device}", (await response.json()).device_id) : await S.errorText(response);
  });
  document.getElementById("make-code").addEventListener("click", async function () {
    const out = document.getElementById("code-result");
    const response = await S.post("/api/v1/enrollment-codes", { deployment_id: deployment.id });
    if (!response.ok) { out.textContent = await S.errorText(response); return; }
    const code = (await response.json()).code;
    out.textContent = config.code.replace("{code}", code).replace("{url}", window.location.origin);
  });
})();
