// The bell in the top bar: the signed-in user's unread notices. The count is
// rendered with the page; it is read again whenever one of the user's jobs
// starts or ends (the live job-event stream), since that is when a notice is
// written (in the same transaction as the change, so it is there by then).
import { api } from "./api.js";

const TOLD = new Set(["running", "succeeded", "failed", "stopped", "timed_out", "lost"]);

export function setBell(unread) {
  const bell = document.getElementById("bell");
  if (!bell) return;
  document.getElementById("bell-count").textContent = String(unread);
  bell.classList.toggle("has-unread", unread > 0);
  bell.setAttribute("aria-label", `Notices: ${unread} unread`);
  document.dispatchEvent(new CustomEvent("modelyard:unread", { detail: unread }));
}

export async function refreshBell() {
  const { unread } = await api("/notices?limit=0");
  setBell(unread);
}

export function watchBell() {
  const me = document.body.dataset.user;
  document.addEventListener("modelyard:job", ({ detail: job }) => {
    if (job.owner === me && TOLD.has(job.event?.to)) refreshBell();
  });
}
