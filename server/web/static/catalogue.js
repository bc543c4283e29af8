/* Catalogue: filter the cards as the visitor types or picks (the form still works without JS). */
"use strict";
(function () {
  const config = window.Suitcase.config();
  const form = document.getElementById("cat-filters");
  const cards = Array.from(document.querySelectorAll("#usecases > li"));
  const count = document.getElementById("cat-count");
  const none = document.getElementById("cat-none");
  function apply() {
    const words = form.q.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const sensor = form.sensor.value;
    const theme = form.theme.value;
    let shown = 0;
    cards.forEach(function (card) {
      const ok = words.every((w) => card.dataset.search.indexOf(w) >= 0) &&
        (!sensor || card.dataset.sensors.split(" ").indexOf(sensor) >= 0) &&
        (!theme || card.dataset.themes.split(" ").indexOf(theme) >= 0);
      card.hidden = !ok;
      if (ok) shown += 1;
    });
    count.textContent = config.count.replace("{n}", String(shown));
    none.hidden = shown > 0;
  }
  form.q.addEventListener("input", apply);
  form.sensor.addEventListener("change", apply);
  form.theme.addEventListener("change", apply);
})();
