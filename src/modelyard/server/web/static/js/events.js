// One live connection per page to /api/v1/events/stream. Each state change of a
// job the user may see becomes a `modelyard:job` DOM event (detail = the job, with
// detail.event = {from, to, reason}); pages and notices listen to that.
// It starts after the last event the server had when it built the page (so a
// change made while the page loads is replayed, not missed); EventSource
// reconnects by itself and resumes after the last event id it saw.

export function startJobEvents() {
  const after = document.body.dataset.eventsAfter;
  const source = new EventSource("/api/v1/events/stream" + (after ? `?after=${after}` : ""));
  source.addEventListener("job", (msg) => {
    const job = JSON.parse(msg.data);
    document.dispatchEvent(new CustomEvent("modelyard:job", { detail: job }));
  });
  source.addEventListener("open", () => document.body.classList.remove("offline"));
  source.addEventListener("error", () => document.body.classList.add("offline"));
  window.addEventListener("pagehide", () => source.close());
  return source;
}
