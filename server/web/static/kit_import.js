/* Kit import: read the CSV (file or text), check it (dry run), show problems by row and column,
 * then import it and show the claim codes made, once, with a CSV to print labels from. */
"use strict";
(function () {
  const S = window.Suitcase;
  const config = S.config();
  const form = document.getElementById("import-form");
  if (!form) return;
  const summary = document.getElementById("import-summary");
  const problems = document.getElementById("import-problems");
  const codes = document.getElementById("import-codes");
  const result = document.getElementById("import-result");
  let dryRun = false;
  document.getElementById("i-check").addEventListener("click", function () { dryRun = true; });
  document.getElementById("i-import").addEventListener("click", function () { dryRun = false; });
  form.file.addEventListener("change", async function () {
    const file = form.file.files[0];
    if (file) form.csv.value = await file.text();
  });
  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }
  function clear() {
    problems.hidden = true;
    codes.hidden = true;
    problems.querySelector("tbody").replaceChildren();
    codes.querySelector("tbody").replaceChildren();
  }
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    clear();
    const text = form.csv.value;
    if (!text.trim()) { summary.textContent = config.empty; return; }
    const response = await S.post("/api/v1/kits/import", { csv: text, org_id: Number(form.org_id.value), dry_run: dryRun });
    const body = await response.json().catch(function () { return {}; });
    if (response.status === 422 && Array.isArray(body.detail)) {
      summary.textContent = config.refused.replace("{n}", body.detail.length);
      const tbody = problems.querySelector("tbody");
      body.detail.forEach(function (p) {
        const tr = document.createElement("tr");
        cell(tr, p.row ? String(p.row) : config.file);
        cell(tr, p.column || "");
        cell(tr, (p.msg || "").replace(/^(row \d+|the file)(, column [^:]+)?: /, ""));
        tbody.appendChild(tr);
      });
      problems.hidden = false;
    } else if (!response.ok) {
      summary.textContent = typeof body.detail === "string" ? body.detail : response.status + " " + response.statusText;
    } else if (body.dry_run) {
      summary.textContent = config.checked.replace("{kits}", body.kits).replace("{pis}", body.pis);
    } else {
      summary.textContent = config.imported.replace("{kits}", body.kits).replace("{pis}", body.pis).replace("{devices}", body.devices.length);
      if (body.claim_codes.length) {
        const tbody = codes.querySelector("tbody");
        const lines = ["kit,pi,claim_code,claim_url"];
        body.claim_codes.forEach(function (c) {
          const tr = document.createElement("tr");
          cell(tr, c.kit); cell(tr, String(c.pi)); cell(tr, c.code);
          tbody.appendChild(tr);
          lines.push([c.kit, c.pi, c.code, c.claim_url].join(","));
        });
        document.getElementById("import-download").href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
        codes.hidden = false;
      }
    }
    result.focus();
  });
})();
