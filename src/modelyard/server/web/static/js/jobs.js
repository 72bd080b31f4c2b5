// Jobs page: the table refreshes (through htmx, with the current filters and page)
// whenever any visible job changes state, and the metric picker follows the names
// the listed jobs have (a job may start printing a new metric at any time).

export function start() {
  document.addEventListener("modelyard:job", () => window.htmx.trigger("#job-table", "refresh"));
  document.body.addEventListener("htmx:afterSwap", (e) => {
    if (e.target.id === "job-table") syncMetricPicker();
  });
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
