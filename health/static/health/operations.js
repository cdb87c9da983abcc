// The operations page: every few seconds, fetch data.json and swap in the
// body it carries (rendered by the same template as the first paint, so the
// page never builds HTML from data itself), then draw the requests-per-minute
// chart as inline SVG from the data. No reload, no library, nothing fetched
// from another site.
(function () {
  "use strict";
  var root = document.getElementById("content-main");
  if (!root || !root.dataset.url) return;
  var url = root.dataset.url;
  var every = Math.max(1, parseFloat(root.dataset.refresh) || 3) * 1000;
  var body = document.getElementById("ops-body");
  var updated = document.getElementById("ops-updated");
  var state = document.getElementById("ops-refresh-state");
  var SVG = "http://www.w3.org/2000/svg";
  var refreshes = 0;

  function svg(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clock(epochSeconds) {
    return new Date(epochSeconds * 1000).toISOString().substring(11, 16);
  }

  // points: [[minute start (epoch s), admitted requests], ...], oldest first.
  function drawChart() {
    var holder = document.getElementById("ops-chart");
    var source = document.getElementById("ops-per-minute");
    if (!holder || !source) return;
    var points = JSON.parse(source.textContent) || [];
    var width = 600, height = 150, left = 44, bottom = 20, top = 10;
    var plot = height - bottom - top;
    var max = 1, total = 0;
    points.forEach(function (p) { max = Math.max(max, p[1]); total += p[1]; });
    var step = (width - left) / Math.max(1, points.length);
    var chart = svg("svg", {viewBox: "0 0 " + width + " " + height, class: "ops-svg", "data-total": total});
    chart.appendChild(svg("line", {x1: left, y1: top + plot, x2: width, y2: top + plot, class: "ops-axis"}));
    chart.appendChild(svg("text", {x: left - 6, y: top + 8, class: "ops-label", "text-anchor": "end"}, String(max)));
    chart.appendChild(svg("text", {x: left - 6, y: top + plot, class: "ops-label", "text-anchor": "end"}, "0"));
    points.forEach(function (p, i) {
      var h = plot * p[1] / max;
      var bar = svg("rect", {x: left + i * step + 0.5, y: top + plot - h, width: Math.max(1, step - 1),
                             height: h, class: "ops-bar"});
      bar.appendChild(svg("title", {}, clock(p[0]) + " UTC: " + p[1] + " request" + (p[1] === 1 ? "" : "s")));
      chart.appendChild(bar);
    });
    if (points.length) {
      chart.appendChild(svg("text", {x: left, y: height - 4, class: "ops-label"}, clock(points[0][0])));
      chart.appendChild(svg("text", {x: width, y: height - 4, class: "ops-label", "text-anchor": "end"},
                            clock(points[points.length - 1][0]) + " UTC"));
    }
    holder.replaceChildren(chart);
    holder.setAttribute("aria-label", total + " admitted API requests in the last hour, at most " + max + " per minute");
  }

  function refresh() {
    if (document.hidden) { setTimeout(refresh, every); return; }
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, 10000);
    fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin", cache: "no-store",
                signal: controller.signal})
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (!response.ok) throw new Error("HTTP " + response.status);
        // An expired session is answered with the login page.
        if (type.indexOf("application/json") !== 0) throw new Error("signed out? reload the page");
        return response.json();
      })
      .then(function (data) {
        body.innerHTML = data.html;
        drawChart();
        refreshes += 1;
        root.dataset.refreshes = String(refreshes);
        updated.textContent = "As of " + data.generated_at.substring(11, 19) + " UTC";
        state.textContent = "";
        state.classList.remove("ops-bad");
      })
      .catch(function (error) {
        state.textContent = "Refresh failed (" + error.message + "); retrying.";
        state.classList.add("ops-bad");
      })
      .finally(function () {
        clearTimeout(timer);
        setTimeout(refresh, every);
      });
  }

  drawChart();
  setTimeout(refresh, every);
})();
