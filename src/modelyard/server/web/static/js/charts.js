// Metric and system charts with uPlot.
//
// One chart per metric; each compared job is one series. The server downsamples
// every series to the chart's width (?max_points=), so a million points draw at
// once; dragging across a chart zooms every chart to that x-range and fetches
// its detail (/metrics/window), "reset zoom" goes back to the whole run.
//
// What the charts show (jobs, axis, zoom) is a "view"; each change numbers a new
// one. A fetch draws only if its view is still current: a slow overview (a
// million points on a cold cache takes seconds) never lands on top of the zoom,
// the other jobs or the axis asked for meanwhile. Refreshes of one view never
// overlap: one asked for while another is in flight runs once that one ends, so
// the last points of a finished job are always fetched after they were written.
import { api } from "./api.js";

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"];
const HEIGHT = 220;
const AXIS_LABELS = { step: "step", epoch: "epoch", time: "time (s)" };

/** [[xs], [ys]] for one series on the chosen axis, sorted by x, one point per x (the last). */
export function toXY(points, axis, t0) {
  const byX = new Map();
  points.forEach((p, i) => {
    const x = axis === "time" ? p.time - t0 : p[axis] ?? (axis === "step" ? i : null);
    if (x !== null && x !== undefined) byX.set(x, p.value);
  });
  const xs = [...byX.keys()].sort((a, b) => a - b);
  return [xs, xs.map((x) => byX.get(x))];
}

/** y-axis labels with as many decimals as the tick spacing needs: uPlot's default keeps 3, so a
 *  learning rate stepping by 0.0002 read "0.002, 0.002, 0.002, 0.001". */
function tickLabels(u, splits, axisIdx, space, incr) {
  let decimals = 0; // the fewest that write the spacing exactly: 0.25 -> 2, 0.0002 -> 4, 5 -> 0
  while (decimals < 12 && incr > 0) {
    const scaled = incr * 10 ** decimals;
    if (Math.abs(scaled - Math.round(scaled)) <= 1e-6 * Math.max(1, scaled)) break;
    decimals++;
  }
  return splits.map((v) => (v == null ? "" : v.toLocaleString("en-US",
    { minimumFractionDigits: decimals, maximumFractionDigits: decimals })));
}

/** The y-axis as wide as its longest label (uPlot's "axis autosize" recipe), so 0.00175 is not cut. */
function axisSize(u, values, axisIdx, cycleNum) {
  const axis = u.axes[axisIdx];
  if (cycleNum > 1) return axis._size; // settled: don't flip between two widths
  let size = axis.ticks.size + axis.gap;
  const longest = (values || []).reduce((a, v) => (v.length > a.length ? v : a), "");
  if (longest) {
    u.ctx.font = axis.font[0];
    size += u.ctx.measureText(longest).width / devicePixelRatio;
  }
  return Math.max(40, Math.ceil(size) + 4);
}

function chartWidth(box) {
  const w = box.clientWidth || 600;
  return Math.max(260, Math.floor(w >= 900 ? w / 2 - 12 : w - 4));
}

/** Create or update the uPlot chart `key` inside `box`; `registry` keeps the instances. */
function plot(box, registry, key, { title, xLabel, labels, data, onSelect = null }) {
  const existing = registry[key];
  if (existing && existing.series.length === labels.length + 1) {
    existing.setData(data, !existing._zoomed);
    return existing;
  }
  existing?.destroy();
  const holder = box.querySelector(`[data-chart="${CSS.escape(key)}"]`) || box.appendChild(document.createElement("div"));
  holder.dataset.chart = key;
  holder.className = "chart";
  holder.replaceChildren();
  const opts = {
    title, width: chartWidth(box), height: HEIGHT,
    scales: { x: { time: false } },
    series: [{ label: xLabel }, ...labels.map((label, i) => ({
      label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true, points: { show: false },
    }))],
    axes: [{ label: xLabel }, { size: axisSize, values: tickLabels }],
    cursor: { drag: { x: true, y: false, setScale: false } },
    legend: { live: true },
    hooks: { setSelect: [(u) => {
      if (!onSelect || u.select.width < 5) return;
      const min = u.posToVal(u.select.left, "x");
      const max = u.posToVal(u.select.left + u.select.width, "x");
      u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      onSelect(min, max);
    }] },
  };
  const u = new window.uPlot(opts, data, holder);
  registry[key] = u;
  return u;
}

export class MetricCharts {
  constructor(box, jobIds, resetButton) {
    this.box = box;
    this.jobIds = jobIds;
    this.ownId = jobIds[0];
    this.axis = "step";
    this.zoom = null; // [min, max] of x while zoomed
    this.view = 0; // bumped whenever jobs, axis or zoom change
    this.loading = null; // the view whose refresh is in flight
    this.again = false; // refresh once more when it ends
    this.t0 = {};
    this.labels = {};
    this.only = null; // the metric names to chart (a Set); null: every one
    this.registry = window.modelyard.charts;
    this.resetButton = resetButton;
    resetButton.addEventListener("click", () => this.resetZoom());
    new ResizeObserver(() => this.resize()).observe(box);
  }

  comparing() {
    return this.jobIds.length > 1;
  }

  async setJobs(ids) {
    this.jobIds = ids;
    this.view++;
    await Promise.all(ids.filter((id) => !(id in this.labels)).map(async (id) => {
      try { this.labels[id] = `#${id} ${(await api(`/jobs/${id}`)).name}`; } catch { this.labels[id] = `#${id} (not found)`; }
    }));
    this.clear();
    this.refresh();
  }

  /** Chart only the metrics in `names` (a Set), or every one (null). */
  setNames(names) {
    this.only = names;
    this.view++;
    this.clear();
    this.refresh();
  }

  setAxis(axis) {
    this.axis = axis;
    this.view++;
    this.zoom = null;
    this.resetButton.hidden = true;
    this.clear();
    this.refresh();
  }

  clear() {
    for (const key of Object.keys(this.registry)) { this.registry[key].destroy(); delete this.registry[key]; }
    this.box.querySelectorAll(".chart").forEach((el) => el.remove());
  }

  async refresh() {
    if (this.zoom) return; // a zoomed chart holds its detail until the zoom is reset
    const view = this.view;
    if (this.loading === view) { this.again = true; return; }
    this.loading = view;
    this.again = false;
    const ids = this.jobIds;
    const width = chartWidth(this.box);
    try {
      const perJob = await Promise.all(ids.map((id) =>
        api(`/jobs/${id}/metrics?max_points=${width}`).catch(() => ({}))));
      if (view !== this.view) return; // jobs, axis or zoom changed meanwhile: that view's fetch draws
      perJob.forEach((series, i) => { this.t0[ids[i]] = firstTime(series); });
      this.draw(ids, perJob);
    } finally {
      if (this.loading === view) {
        this.loading = null;
        if (this.again) { this.again = false; this.refresh(); }
      }
    }
  }

  async zoomTo(min, max) {
    const view = ++this.view;
    this.zoom = [min, max];
    this.resetButton.hidden = false;
    const ids = this.jobIds;
    const width = chartWidth(this.box);
    const perJob = await Promise.all(ids.map((id) => {
      const shift = this.axis === "time" ? this.t0[id] || 0 : 0;
      const q = `x=${this.axis}&start=${min + shift}&end=${max + shift}&max_points=${width}`;
      return api(`/jobs/${id}/metrics/window?${q}`).catch(() => ({}));
    }));
    if (view !== this.view) return; // zoomed again, or reset, meanwhile
    this.draw(ids, perJob);
    for (const u of Object.values(this.registry)) u.setScale("x", { min, max });
  }

  resetZoom() {
    this.view++;
    this.zoom = null;
    this.resetButton.hidden = true;
    for (const u of Object.values(this.registry)) u._zoomed = false;
    this.refresh();
  }

  draw(ids, perJob) {
    const names = [...new Set(perJob.flatMap((s) => Object.keys(s)))].filter((n) => !this.only || this.only.has(n)).sort();
    this.box.querySelector(".empty-charts")?.toggleAttribute("hidden", names.length > 0);
    const labels = ids.map((id) => this.labels[id] || `#${id}`);
    for (const name of names) {
      const tables = perJob.map((s, i) => toXY(s[name] || [], this.axis, this.t0[ids[i]] || 0));
      const data = tables.length === 1 ? tables[0] : window.uPlot.join(tables);
      const u = plot(this.box, this.registry, name, {
        title: name, xLabel: AXIS_LABELS[this.axis], labels, data, onSelect: (min, max) => this.zoomTo(min, max),
      });
      u._zoomed = !!this.zoom;
      if (!u._hooked) {
        u._hooked = true;
        u.over.addEventListener("dblclick", () => this.resetZoom());
      }
    }
  }

  resize() {
    const width = chartWidth(this.box);
    for (const u of Object.values(this.registry)) if (Math.abs(u.width - width) > 8) u.setSize({ width, height: HEIGHT });
  }
}

function firstTime(series) {
  const starts = Object.values(series).map((points) => points[0]?.time).filter((t) => t !== undefined);
  return starts.length ? Math.min(...starts) : 0;
}

/** CPU, memory and GPU use of one job over time, from /jobs/ID/system-metrics. */
export class SystemCharts {
  constructor(box, jobId) {
    this.box = box;
    this.jobId = jobId;
    this.registry = window.modelyard.systemCharts;
  }

  async refresh() {
    const { samples } = await api(`/jobs/${this.jobId}/system-metrics`).catch(() => ({ samples: [] }));
    if (!samples.length) return;
    this.box.querySelector("p.muted")?.remove();
    const t0 = samples[0].t;
    const xs = samples.map((s) => s.t - t0);
    this.draw("cpu", "CPU %", ["cpu"], [xs, samples.map((s) => s.cpu_percent)]);
    this.draw("memory", "memory (MiB)", ["rss"], [xs, samples.map((s) => s.memory_rss == null ? null : s.memory_rss / 2 ** 20)]);
    const gpus = [...new Set(samples.flatMap((s) => (s.gpus || []).map((g) => g.index)))].sort((a, b) => a - b);
    if (!gpus.length) return;
    const gpu = (s, i, key) => (s.gpus || []).find((g) => g.index === i)?.[key] ?? null;
    const labels = gpus.map((i) => `GPU ${i}`);
    this.draw("gpu-util", "GPU utilisation %", labels, [xs, ...gpus.map((i) => samples.map((s) => gpu(s, i, "util")))]);
    this.draw("gpu-memory", "GPU memory (MiB)", labels,
      [xs, ...gpus.map((i) => samples.map((s) => (gpu(s, i, "memory_used") ?? NaN) / 2 ** 20))]);
  }

  draw(key, title, labels, data) {
    plot(this.box, this.registry, key, { title, xLabel: "time (s)", labels, data });
  }
}
