/* Maps with Leaflet: OpenStreetMap tiles when online; offline (no tiles URL, the browser offline,
 * or tiles failing to load) the vendored outlines of the Nordic/Baltic countries (Natural Earth,
 * /static/vendor/basemap/) under the markers, so they keep their coastlines and borders. */
"use strict";
(function () {
  const Suitcase = (window.Suitcase = window.Suitcase || {});
  Suitcase.map = function (el, config) {
    if (!el || !window.L) return null;
    const markers = (config.markers || []).filter((m) => m.lat != null && m.lon != null);
    const map = L.map(el, { scrollWheelZoom: false, attributionControl: true });
    const note = document.getElementById(config.noteId || "map-note");
    let tiles = null;
    let outlines = null;
    function basemap() {
      if (outlines) return;
      outlines = true;
      fetch(config.basemap || "/static/vendor/basemap/nordic.geojson")
        .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error(String(r.status))); })
        .then(function (data) {
          outlines = L.geoJSON(data, {
            interactive: false,
            style: { color: "#6b7280", weight: 1, fillColor: "#f3efe4", fillOpacity: 1 },
            attribution: "Outlines: Natural Earth",
          }).addTo(map);
          outlines.bringToBack();
          el.dataset.basemap = String(data.features.length);
        })
        .catch(function () { el.dataset.basemap = "failed"; });
    }
    function offline() {
      if (tiles) { map.removeLayer(tiles); tiles = null; }
      el.classList.add("offline");
      el.dataset.tiles = "off";
      if (note) note.textContent = config.offline_note || "";
      basemap();
      // The outlines are 1:10m: zoomed in to a street they are a straight line. Zoom out far
      // enough that the coast around the markers shows (a lone marker: its part of the country).
      const cap = markers.length > 1 ? 11 : 8;
      if (map.getZoom() > cap) map.setZoom(cap);
    }
    if (config.tiles && navigator.onLine !== false) {
      let failures = 0;
      tiles = L.tileLayer(config.tiles, { maxZoom: 19, attribution: "&copy; OpenStreetMap contributors" });
      tiles.on("tileerror", function () { failures += 1; if (failures >= 3) offline(); });
      tiles.addTo(map);
      el.dataset.tiles = "on";
    } else {
      offline();
    }
    const layer = [];
    markers.forEach(function (m) {
      const marker = L.circleMarker([m.lat, m.lon], {
        radius: m.blurred ? 14 : 9, weight: 2,
        color: m.stale ? "#4b5563" : "#0b5cad", fillColor: m.stale ? "#9ca3af" : "#3b82f6", fillOpacity: m.blurred ? 0.35 : 0.8,
        dashArray: m.blurred ? "4 4" : null,
      });
      const title = document.createElement("div");
      if (m.href) {
        const a = document.createElement("a");
        a.href = m.href; a.textContent = m.name; title.appendChild(a);
      } else { title.textContent = m.name; }
      if (m.note) { const p = document.createElement("div"); p.textContent = m.note; title.appendChild(p); }
      marker.bindPopup(title);
      // Names are data (a deployment's name is typed by its operator): text nodes, never HTML.
      const tip = document.createElement("span");
      tip.textContent = m.name;
      marker.bindTooltip(tip);
      marker.addTo(map);
      layer.push(marker);
    });
    const zoom = tiles ? 14 : 8;
    if (markers.length === 1) map.setView([markers[0].lat, markers[0].lon], zoom);
    else if (markers.length > 1) map.fitBounds(L.featureGroup(layer).getBounds().pad(0.3), { maxZoom: tiles ? 18 : 11 });
    else map.setView([56.0, 10.5], 6);
    el.dataset.markers = String(markers.length);
    return map;
  };
})();
