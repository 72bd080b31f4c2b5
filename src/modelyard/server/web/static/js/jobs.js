// Jobs page: the table refreshes (through htmx, with the current filters and page)
// whenever any visible job changes state.

export function start() {
  document.addEventListener("modelyard:job", () => window.htmx.trigger("#job-table", "refresh"));
}
