/* Hexie dashboard: each .dash-chart reads its figure's JSON (the numbers of the table beside it)
   and draws it with Apache ECharts (static/vendor/echarts, served by the app). */
(function () {
  "use strict";
  if (!window.echarts) { return; }
  var charts = [];
  var narrow = function () { return window.matchMedia("(max-width: 640px)").matches; };

  // a count held back ("<5", a confidential programme's small number) is no bar at all
  function number(v) {
    if (v === null || v === undefined) { return null; }
    var n = Number(v);
    return isNaN(n) ? null : n;
  }
  function drawable(fig) {
    return fig.tables[0].rows.some(function (r) {
      return fig.chart.series.some(function (i) { return number(r[i]) !== null; });
    });
  }

  function option(fig) {
    var table = fig.tables[0];
    var chart = fig.chart;
    var categories = table.rows.map(function (r) { return String(r[0]); });
    var series = chart.series.map(function (i) {
      return {
        name: table.columns[i], type: "bar", stack: chart.stack ? "all" : undefined,
        data: table.rows.map(function (r) { return number(r[i]); }),
        label: chart.percent ? { show: true, position: chart.horizontal ? "right" : "top",
                                 formatter: function (p) { return p.value === null ? "" : p.value + "%"; } } : undefined
      };
    });
    var valueAxis = { type: "value", max: chart.percent ? 100 : undefined, minInterval: 1,  // no 1.5 cases
                      axisLabel: { formatter: chart.percent ? "{value}%" : "{value}" } };
    var categoryAxis = { type: "category", data: categories, inverse: !!chart.horizontal,
                         axisLabel: { interval: 0, rotate: chart.horizontal ? 0 : (narrow() ? 45 : 0),
                                      width: chart.horizontal ? (narrow() ? 90 : 160) : undefined, overflow: "truncate" } };
    return {
      animation: false,
      textStyle: { fontFamily: "inherit" },
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      legend: { show: series.length > 1, type: "scroll", top: 0 },
      grid: { left: 8, right: chart.percent && chart.horizontal ? 40 : 12, bottom: 8,
              top: series.length > 1 ? 36 : 16, containLabel: true },
      xAxis: chart.horizontal ? valueAxis : categoryAxis,
      yAxis: chart.horizontal ? categoryAxis : valueAxis,
      series: series
    };
  }

  document.querySelectorAll(".dash-chart[data-src]").forEach(function (el) {
    fetch(el.getAttribute("data-src"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (fig) {
        // nothing to draw (no rows, or every number held back): the table beside it says it all
        if (!fig.tables[0].rows.length || !drawable(fig)) { el.classList.add("dash-chart-empty"); return; }
        // a bar chart on its side gets a line for each bar, so its labels do not overlap
        if (fig.chart.horizontal) { el.style.height = Math.max(300, fig.tables[0].rows.length * 24 + 60) + "px"; }
        var chart = window.echarts.init(el, null, { renderer: "svg" });
        chart.setOption(option(fig));
        el.setAttribute("data-drawn", "1");
        charts.push(chart);
      })
      .catch(function () { el.classList.add("dash-chart-empty"); });
  });
  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
  window.addEventListener("beforeprint", function () { charts.forEach(function (c) { c.resize(); }); });
})();
