// Sweep page: the parallel coordinates of every trial (pcoords.js), and one scatter per parameter,
// its value (x) against each finished trial's objective (y); a categorical parameter's values are
// placed at 0, 1, 2... in the order the sweep names them.
// While the sweep runs the page is fetched again (as JSON) every few seconds and both are redrawn.
import { drawParallel } from "./pcoords.js";

const POLL_MS = 4000;
const HEIGHT = 220;

export function start() {
  const root = document.getElementById("sweep");
  if (!root) return;
  const space = JSON.parse(root.dataset.space);
  draw(root, JSON.parse(root.dataset.trials), JSON.parse(root.dataset.parameters), root.dataset.metric, space, root.dataset.goal);
  if (root.dataset.state === "running") {
    const timer = setInterval(async () => {
      const res = await fetch(`${location.pathname}?format=json`, { credentials: "same-origin" });
      if (!res.ok) return;
      const s = await res.json();
      if (s.state !== "running") { clearInterval(timer); location.reload(); return; }
      draw(root, s.trials, s.parameters, s.metric.name, s.spec.parameters, s.metric.goal);
    }, POLL_MS);
  }
}

function draw(root, trials, parameters, metric, space, goal) {
  drawParallel(document.getElementById("pcoords"), { trials, parameters, space, metric, goal });
  const box = document.getElementById("scatter");
  const done = trials.filter((t) => t.value !== null && t.value !== undefined);
  window.modelyard.sweepCharts = [];
  if (!done.length) return;
  box.replaceChildren();
  for (const name of parameters) {
    const categories = [...new Set(trials.map((t) => t.params[name]).filter((v) => typeof v !== "number"))];
    const xOf = (v) => (typeof v === "number" ? v : categories.indexOf(v));
    const [xs, ys] = scatterData(done.map((t) => [xOf(t.params[name]), t.value]));
    const holder = document.createElement("div");
    holder.className = "chart";
    holder.dataset.param = name;
    box.append(holder);
    const xAxis = { label: name };
    const xScale = { time: false };
    if (categories.length) {
      xAxis.splits = () => categories.map((_, i) => i);
      xAxis.values = (u, ticks) => ticks.map((v) => categories[Math.round(v)] ?? "");
      xScale.range = () => [-0.5, categories.length - 0.5];
    }
    const opts = {
      title: `${name} → ${metric}`, width: Math.max(260, Math.floor((box.clientWidth || 600) / 2 - 12)), height: HEIGHT,
      scales: { x: xScale }, axes: [xAxis, { label: metric }],
      series: [{}, { label: metric, stroke: "#2563eb", width: 0, paths: () => null,
                     points: { show: true, size: 8, fill: "#2563eb" } }],
      legend: { show: false },
    };
    window.modelyard.sweepCharts.push(new uPlot(opts, [xs, ys], holder));
  }
}

/** Points sorted by x, strictly increasing: uPlot finds what to draw by searching x, so a second
 *  point at the same x (two trials with one value) moves by a hair instead of being lost. */
export function scatterData(points) {
  points.sort((a, b) => a[0] - b[0]);
  const xs = [];
  let last = -Infinity;
  for (const [x] of points) {
    const next = x > last ? x : last + Math.max(Math.abs(last), 1) * 1e-9;
    xs.push(next);
    last = next;
  }
  return [xs, points.map((p) => p[1])];
}
