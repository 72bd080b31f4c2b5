// Notices: when one of the signed-in user's jobs ends, a toast says so on
// whatever page is open (and a desktop notification, if the user allowed them).
// A toast goes by itself after 20 s, or at once with its × button.

const ENDINGS = {
  succeeded: "finished", failed: "failed", timed_out: "timed out", lost: "was lost", stopped: "was stopped",
};

export function toast(text, { kind = "info", href = null, timeout = 20000 } = {}) {
  const box = document.getElementById("toasts");
  const el = document.createElement("div");
  el.className = `toast toast-${kind}`;
  el.setAttribute("role", "status");
  const body = document.createElement(href ? "a" : "span");
  body.textContent = text;
  if (href) body.href = href;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.title = "dismiss";
  close.setAttribute("aria-label", "dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => el.remove());
  el.append(body, close);
  box.append(el);
  if (timeout) setTimeout(() => el.remove(), timeout);
  return el;
}

export function watchEndings() {
  const me = document.body.dataset.user;
  document.addEventListener("modelyard:job", ({ detail: job }) => {
    const to = job.event?.to;
    if (!(to in ENDINGS) || job.owner !== me) return;
    const kind = to === "succeeded" ? "ok" : to === "stopped" ? "info" : "bad";
    const text = `Job #${job.id} ${job.name} ${ENDINGS[to]}${job.exit_code != null ? ` (exit ${job.exit_code})` : ""}`;
    toast(text, { kind, href: `/ui/jobs/${job.id}` });
    if (window.Notification?.permission === "granted" && document.hidden) new Notification("modelyard", { body: text });
  });
}
