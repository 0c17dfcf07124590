// huiyuan console: the little behaviour the pages need on top of HTMX and ECharts.
(function () {
  "use strict";

  // Forms marked data-confirm ask first; selects marked data-autosubmit submit on change.
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { e.preventDefault(); e.stopImmediatePropagation(); }
  }, true);
  document.addEventListener("change", function (e) {
    if (e.target.matches && e.target.matches("select[data-autosubmit]")) { e.target.form.submit(); }
  });

  // Validation and permission answers carry a rendered fragment: show it instead of dropping it.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var status = e.detail.xhr.status;
    if (status === 403 || status === 404 || status === 422 || status === 429) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });

  // Charts: <div data-chart-url="..."> gets {months, series:[{name, data}]} rendered as stacked bars.
  function drawChart(el) {
    if (!window.echarts) { return; }
    fetch(el.getAttribute("data-chart-url"), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (!data.series.length) { el.textContent = el.getAttribute("data-empty") || ""; return; }
        var chart = window.echarts.init(el);
        chart.setOption({
          tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
          legend: { top: 0 },
          grid: { left: 16, right: 16, top: 40, bottom: 30, containLabel: true },
          xAxis: { type: "category", data: data.months },
          yAxis: { type: "value", minInterval: 1 },
          series: data.series.map(function (s) {
            return { name: s.name, type: "bar", stack: "enrollments", data: s.data };
          })
        });
        window.addEventListener("resize", function () { chart.resize(); });
      });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-chart-url]").forEach(drawChart);
  });
})();
