// Queue page: redraw the panel whenever a job starts, ends or is queued.

export function start() {
  document.addEventListener("modelyard:job", () => window.htmx.trigger("#queue", "refresh"));
}
