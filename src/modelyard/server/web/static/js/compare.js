// Compare page: the chosen jobs' curves overlaid, one chart per chosen metric, one series per job
// (charts.js); the tables above are server-rendered. While a job still runs, the curves follow it.
import { MetricCharts } from "./charts.js";

const POLL_MS = 3000;

export function start() {
  const root = document.getElementById("compare");
  if (!root) return; // the page shows why nothing is compared
  const ids = JSON.parse(root.dataset.ids);
  const names = JSON.parse(root.dataset.names);
  const charts = new MetricCharts(document.getElementById("charts"), ids, document.getElementById("reset-zoom"));
  ids.forEach((id, i) => { charts.labels[id] = `#${id} ${names[i]}`; });
  const choice = document.getElementById("metric-choice");
  const chosen = () => new Set([...choice.querySelectorAll("input:checked")].map((box) => box.value));
  charts.setNames(chosen());
  window.modelyard.metricCharts = charts;
  choice.addEventListener("change", () => charts.setNames(chosen()));
  document.getElementById("x-axis").addEventListener("change", (e) => charts.setAxis(e.target.value));
  if (root.dataset.active === "true") setInterval(() => charts.refresh(), POLL_MS);
}
