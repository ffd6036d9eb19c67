// Draws every chart of the analytics pages: each <script type="application/json"
// data-chart="target-id"> holds one Plotly figure (data and layout) made on the server.
(function () {
  "use strict";
  function draw() {
    if (!window.Plotly) { return; }
    document.querySelectorAll("script[data-chart]").forEach(function (node) {
      var target = document.getElementById(node.getAttribute("data-chart"));
      if (!target) { return; }
      var figure = JSON.parse(node.textContent);
      window.Plotly.newPlot(target, figure.data, figure.layout,
        {responsive: true, displaylogo: false, displayModeBar: false});
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
