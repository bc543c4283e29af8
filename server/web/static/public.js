"use strict";
(function () {
  const config = window.Suitcase.config();
  window.Suitcase.map(document.getElementById("map"), config.map);
})();
