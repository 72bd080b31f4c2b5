// Parallel coordinates for the sweep page: one vertical axis per parameter and the objective's last,
// one line per finished trial, coloured from the worst (orange) to the best (blue) objective, the
// best drawn thick and on top. Inline SVG and no library: the UI's CSP takes scripts and styles from
// this origin only, and colours are presentation attributes or app.css classes, never style="".
//
// A parameter's axis spans the sweep's search space (from its spec), so where a line crosses it says
// where in the space that trial lies: a float or int on [low, high], on a log scale where the spec
// says `log`; a categorical one's values evenly spaced, in the order the spec names them. The
// objective's axis spans the finished trials' values with the better end on top (the lowest where
// the goal is to minimise). Pruned and failed trials have no objective: they are drawn faint and
// dashed across the parameters' axes only. Each line links to its trial's job; its <title> is the
// hover text. The links are out of the tab order: the trials table above has the same ones.
const NS = "http://www.w3.org/2000/svg";
const HEIGHT = 300;
const TOP = 44; // room for an axis's name (and the objective's "lowest on top")
const BOTTOM = 16;
const SIDE = 64; // room for the first axis's tick labels, and the last's name
const MIN_GAP = 120; // between axes: below this the box scrolls sideways rather than squeeze them
const WORST_HUE = 25;
const BEST_HUE = 215;

/** Draw the trials into `box` (replacing what it held); returns the <svg>, or null with no trial to draw. */
export function drawParallel(box, { trials, parameters, space, metric, goal }) {
  const done = trials.filter((t) => t.state === "complete" && typeof t.value === "number");
  const faint = trials.filter((t) => t.state === "pruned" || t.state === "failed");
  if (!done.length && !faint.length) return null;
  const axes = [...parameters.map((n) => paramAxis(n, space?.[n], trials)), objectiveAxis(metric, goal, done)];
  const width = Math.max(box.clientWidth || 600, 2 * SIDE + MIN_GAP * (axes.length - 1));
  const gap = (width - 2 * SIDE) / Math.max(axes.length - 1, 1);
  axes.forEach((a, i) => { a.x = SIDE + i * gap; });
  const svg = el("svg", { class: "pcoords", width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: "img",
    "aria-label": `Parallel coordinates: ${done.length} finished trials over ${parameters.join(", ")} against ` +
      `${metric}; the trials table has every value` });
  const lines = el("g", { class: "lines" });
  for (const t of faint) lines.append(line(t, axes.slice(0, -1), "faint", null));
  const best = bestOf(done, goal);
  const ranked = [...done].sort((a, b) => (goal === "maximize" ? a.value - b.value : b.value - a.value));
  const [lo, hi] = axes[axes.length - 1].domain;
  for (const t of ranked.filter((t) => t !== best)) lines.append(line(t, axes, "trial", hue(t.value, lo, hi, goal)));
  if (best) lines.append(line(best, axes, "trial best", BEST_HUE));
  svg.append(lines, ...axes.map(axisGroup));
  box.replaceChildren(svg);
  return svg;
}

/** The first of the best, as the server picks it (services/sweeps.py). */
function bestOf(done, goal) {
  const better = goal === "maximize" ? (a, b) => a > b : (a, b) => a < b;
  return done.reduce((best, t) => (best === null || better(t.value, best.value) ? t : best), null);
}

function hue(value, lo, hi, goal) {
  const share = hi > lo ? (value - lo) / (hi - lo) : 1; // 0 at the lowest value, 1 at the highest
  return WORST_HUE + (BEST_HUE - WORST_HUE) * (goal === "maximize" ? share : 1 - share);
}

function line(t, axes, cls, h) {
  const points = axes.map((a) => [a.x, a.y(a.key === null ? t.value : t.params[a.key])]);
  if (points.some(([, y]) => y === null)) return document.createDocumentFragment();
  const d = "M" + points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join("L");
  // with one parameter a faint trial is one point: a zero-length stroke with round caps draws it as a dot
  const path = el("path", { class: cls, d: points.length > 1 ? d : `${d}h0.01` });
  if (h !== null) path.setAttribute("stroke", `hsl(${h.toFixed(0)} 75% 45%)`);
  const values = axes.map((a) => `${a.name} = ${format(a.key === null ? t.value : t.params[a.key])}`);
  const title = el("title", {});
  title.textContent = `trial ${t.number}${cls === "faint" ? ` (${t.state})` : ""}: ${values.join(", ")}`;
  path.append(title);
  if (!t.job_id) return path;
  const link = el("a", { href: `/ui/jobs/${t.job_id}`, tabindex: "-1", "data-trial": t.number });
  link.append(path);
  return link;
}

/** A parameter's axis: its kind and bounds from the spec; values only where the spec has none. */
function paramAxis(name, spec, trials) {
  const seen = trials.map((t) => t.params[name]).filter((v) => v !== undefined && v !== null);
  if (spec?.type === "categorical" || (!spec && seen.some((v) => typeof v !== "number"))) {
    const values = spec ? spec.values : [...new Set(seen)];
    return categoricalAxis(name, values);
  }
  const nums = seen.filter((v) => typeof v === "number");
  const lo = Math.min(spec?.low ?? Infinity, ...nums);
  const hi = Math.max(spec?.high ?? -Infinity, ...nums);
  return spec?.log && lo > 0 ? logAxis(name, lo, hi) : linearAxis(name, name, lo, hi, spec?.type === "int");
}

function objectiveAxis(metric, goal, done) {
  const values = done.map((t) => t.value);
  const axis = linearAxis(metric, null, Math.min(...values), Math.max(...values), false);
  if (goal !== "maximize") { // the better end on top: the lowest value
    const up = axis.fraction;
    axis.fraction = (v) => { const f = up(v); return f === null ? null : 1 - f; };
  }
  axis.note = goal === "maximize" ? "highest on top" : "lowest on top";
  return axis;
}

function categoricalAxis(name, values) {
  const index = (v) => { const i = values.findIndex((c) => c === v); return i >= 0 ? i : values.findIndex((c) => String(c) === String(v)); };
  const every = Math.ceil(values.length / 12); // at most a dozen labels: more would overlap
  return axisOf(name, name, (v) => { const i = index(v); return i < 0 ? null : values.length > 1 ? i / (values.length - 1) : 0.5; },
    values.filter((_, i) => i % every === 0), [0, values.length - 1]);
}

function linearAxis(name, key, lo, hi, integer) {
  if (!Number.isFinite(lo)) return axisOf(name, key, () => null, [], [lo, hi]);
  const ticks = niceTicks(lo, hi, 5).filter((v) => !integer || Number.isInteger(v));
  return axisOf(name, key, (v) => (typeof v !== "number" ? null : hi > lo ? (v - lo) / (hi - lo) : 0.5), ticks, [lo, hi]);
}

function logAxis(name, lo, hi) {
  const [a, b] = [Math.log10(lo), Math.log10(hi)];
  let ticks = [];
  for (let e = Math.ceil(a - 1e-9); e <= b + 1e-9; e++) ticks.push(Number((10 ** e).toPrecision(12)));
  if (ticks.length < 2) ticks = [...new Set([lo, hi])];
  return axisOf(name, name, (v) => (typeof v !== "number" || v <= 0 ? null : b > a ? (Math.log10(v) - a) / (b - a) : 0.5),
    ticks, [lo, hi]);
}

/** `key`: the parameter the axis reads, null for the objective. */
function axisOf(name, key, fraction, ticks, domain) {
  const axis = { name, key, fraction, ticks, domain, note: null, x: 0 };
  axis.y = (v) => { const f = axis.fraction(v); return f === null ? null : TOP + (1 - f) * (HEIGHT - TOP - BOTTOM); };
  return axis;
}

/** About `count` round values (1, 2 or 5 times a power of ten apart) within [lo, hi]. */
export function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw * (1 - 1e-9));
  const ticks = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) ticks.push(Number((k * step).toPrecision(12)));
  return ticks;
}

function axisGroup(a) {
  const g = el("g", { class: a.key === null ? "axis objective" : "axis", "data-axis": a.name });
  g.append(el("line", { x1: a.x, x2: a.x, y1: TOP, y2: HEIGHT - BOTTOM }));
  const name = text(a.x, 14, clip(a.name, 18), "axis-name");
  const full = el("title", {});
  full.textContent = a.name;
  name.append(full);
  g.append(name);
  if (a.note) g.append(text(a.x, 28, a.note, "axis-note"));
  const side = a.key === null ? 1 : -1; // the objective's labels on its right, clear of the lines that end there
  for (const v of a.ticks) {
    const y = a.y(v);
    if (y === null) continue;
    g.append(el("line", { class: "tick", x1: a.x, x2: a.x + 4 * side, y1: y, y2: y }),
      text(a.x + 7 * side, y + 4, clip(format(v), 10), side > 0 ? "tick-label right" : "tick-label"));
  }
  return g;
}

function format(v) {
  if (typeof v !== "number") return String(v);
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
}

function clip(s, n) {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

function text(x, y, content, cls) {
  const t = el("text", { x, y, class: cls });
  t.textContent = content;
  return t;
}

function el(tag, attrs) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}
