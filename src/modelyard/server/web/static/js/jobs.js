// Jobs page: the table refreshes (through htmx, with the current filters and page)
// whenever any visible job changes state, and the metric picker follows the names
// the listed jobs have (a job may start printing a new metric at any time).
// A header sorts by its column, a tag chip filters by its tag, and the filters live
// in the page's URL, so that a link shows the same table.

import { api } from "./api.js";
import { toast } from "./notify.js";

export function start() {
  document.addEventListener("modelyard:job", () => window.htmx.trigger("#job-table", "refresh"));
  document.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action=remove]");
    if (button) remove(button);
  });
  document.body.addEventListener("htmx:afterSwap", (e) => {
    if (e.target.id === "job-table") { syncMetricPicker(); syncUrl(); showPicked(); }
  });
  document.getElementById("job-table").addEventListener("click", (e) => {
    const header = e.target.closest("th[data-sort]");
    if (header) return refilter("sort", header.dataset.sort);
    const chip = e.target.closest("button.tag[data-tag]");
    if (chip) filterByTag(chip.dataset.tag);
  });
  startCompare();
}

function refilter(name, value) {
  document.getElementById(name).value = value;
  document.getElementById("page").value = "1";
  window.htmx.trigger("#filters", "change");
}

function filterByTag(tag) {
  const box = document.getElementById("q");
  const word = /^[\w.:/+-]+$/.test(tag) ? `tag:${tag}` : `'tag:${tag}'`;
  if (!box.value.split(/\s+/).includes(word)) box.value = `${box.value.trim()} ${word}`.trim();
  refilter("page", "1");
}

const DEFAULTS = { page: "1", scope: "all" }; // left out of the URL: what the page is without them

function syncUrl() {
  const query = new URLSearchParams();
  for (const [k, v] of new FormData(document.getElementById("filters"))) {
    if (v && DEFAULTS[k] !== v) query.set(k, v);
  }
  const url = `${location.pathname}${query.size ? `?${query}` : ""}`;
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}

// Jobs picked to compare: kept here, so a refresh of the rows (or another page of them) keeps them.
const picked = new Set();

function startCompare() {
  const button = document.getElementById("compare-selected");
  document.getElementById("job-table").addEventListener("change", (e) => {
    if (!e.target.matches("input.pick")) return;
    const id = Number(e.target.value);
    if (e.target.checked) picked.add(id); else picked.delete(id);
    showPicked();
  });
  button.addEventListener("click", () => location.assign(`/ui/compare?ids=${[...picked].join(",")}`));
}

function showPicked() {
  document.querySelectorAll("#job-table input.pick").forEach((box) => { box.checked = picked.has(Number(box.value)); });
  const button = document.getElementById("compare-selected");
  button.disabled = picked.size < 2;
  button.textContent = picked.size ? `Compare (${picked.size})` : "Compare";
}

function syncMetricPicker() {
  const data = document.getElementById("metric-names");
  const pick = document.getElementById("metric-pick");
  if (!data || !pick || document.activeElement === pick) return; // never under the reader's hand
  const names = JSON.parse(data.dataset.names || "[]");
  const chosen = pick.value;
  if (chosen && !names.includes(chosen)) names.push(chosen); // keep the column being shown
  const have = [...pick.options].slice(1).map((o) => o.value);
  if (names.join("\n") === have.join("\n")) return;
  pick.length = 1; // the "metric column…" placeholder stays
  for (const n of names) pick.add(new Option(n, n, false, n === chosen));
}

async function remove(button) {
  const id = button.dataset.job;
  if (!window.confirm(`Remove job #${id}: its logs, metrics, outputs and run folders? This cannot be undone.`)) return;
  button.disabled = true;
  try {
    await api(`/jobs/${id}`, { method: "DELETE" });
    toast(`Job #${id} removed`);
    window.htmx.trigger("#job-table", "refresh");
  } catch (err) {
    toast(`Could not remove job #${id}: ${err.message}`, { kind: "bad" });
    button.disabled = false;
  }
}
