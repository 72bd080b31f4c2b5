// Compare page: the chosen jobs' curves overlaid, one chart per chosen metric, one series per job
// (charts.js). The tables are server-rendered; when a compared job changes state they are fetched
// again (the page itself, its tables swapped in), and while a job runs the curves follow it.
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
  const tables = new Refetch();
  document.addEventListener("modelyard:job", ({ detail: job }) => {
    if (!ids.includes(job.id)) return;
    charts.refresh(); // the last points of a job that just ended
    tables.run();
  });
}

/** Fetches the page again and swaps in its tables; one fetch at a time, and one more after a change
 *  that came while it was in flight, so the last fetch always starts after the last change. */
class Refetch {
  constructor() { this.busy = false; this.again = false; }

  async run() {
    if (this.busy) { this.again = true; return; }
    this.busy = true;
    try {
      const res = await fetch(location.href, { credentials: "same-origin" });
      if (!res.ok) return;
      const fresh = new DOMParser().parseFromString(await res.text(), "text/html").querySelector(".compare-grid");
      if (fresh) document.querySelector(".compare-grid").replaceWith(fresh);
    } finally {
      this.busy = false;
      if (this.again) { this.again = false; this.run(); }
    }
  }
}
