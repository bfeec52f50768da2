/* Hexie: small progressive enhancements; every page works without this file. */
(function () {
  "use strict";
  // A page with a process map: load the layout engine and the map's script, both served by
  // the app itself next to this file (static/vendor/elkjs, static/hexie-diagram.js).
  var here = document.currentScript && document.currentScript.src;
  if (here && document.querySelector("svg.diagram[data-graph]")) {
    var base = here.replace(/[^/]*([?#].*)?$/, "");
    ["vendor/elkjs/elk.bundled.js", "hexie-diagram.js"].forEach(function (name) {
      var script = document.createElement("script");
      script.src = base + name;
      script.async = false;            // in this order: the map needs ELK
      document.head.appendChild(script);
    });
  }
  // The dashboard: ECharts (served by the app, static/vendor/echarts) and the dashboard's script.
  if (here && document.querySelector(".dash-chart[data-src]")) {
    var root = here.replace(/[^/]*([?#].*)?$/, "");
    ["vendor/echarts/echarts.min.js", "hexie-dashboard.js"].forEach(function (name) {
      var script = document.createElement("script");
      script.src = root + name;
      script.async = false;
      document.head.appendChild(script);
    });
  }
  // On a phone the filter bar folds under its button, so that the list is on the first screen;
  // open when a filter is set (the page then shows what it filtered). 720px: hexie.css's phone width.
  if (window.matchMedia && window.matchMedia("(max-width: 720px)").matches) {
    Array.prototype.forEach.call(document.querySelectorAll("details.filter-fold:not([data-active])"), function (fold) {
      fold.open = false;
    });
  }
  // The print button of a case page.
  if (!window.__hexiePrintButton) {
    window.__hexiePrintButton = true;
    document.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest("[data-print]");
      if (button) { event.preventDefault(); window.print(); }
    });
  }
  // Ask before actions that finish a case (reject, withdraw, close...).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    // One click, one submission: slow county networks invite double clicks.
    if (form.method.toLowerCase() === "post") {
      window.setTimeout(function () {
        form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
      }, 0);
    }
  });
  // Coming back with the browser's Back button: the buttons work again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("button[type=submit][disabled]").forEach(function (b) { b.disabled = false; });
  });
  // Choosing a programme in the filter bar reloads the list (and its steps).
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.hasAttribute && el.hasAttribute("data-autosubmit") && el.form) {
      var state = el.form.querySelector("select[name=state]");
      if (state) { state.value = ""; }
      el.form.submit();
    }
  });
})();
