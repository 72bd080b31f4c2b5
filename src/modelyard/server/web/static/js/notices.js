// Notices page: mark one or all read; the list redraws when a new notice comes.
import { api } from "./api.js";
import { setBell } from "./bell.js";
import { toast } from "./notify.js";

function showUnread(unread) {
  document.getElementById("unread-text").textContent = `${unread} unread`;
  document.getElementById("read-all").disabled = unread === 0;
}

export function start() {
  document.addEventListener("modelyard:unread", ({ detail: unread }) => {
    showUnread(unread);
    window.htmx.trigger("#notice-list", "refresh");
  });
  document.getElementById("notice-list").addEventListener("click", async (e) => {
    const button = e.target.closest("button.mark-read");
    if (!button) return;
    button.disabled = true;
    try {
      const { unread } = await api(`/notices/${button.dataset.id}/read`, { method: "POST" });
      const item = button.closest("li");
      item.classList.remove("unread");
      const strong = item.querySelector(".notice-title strong");
      if (strong) strong.replaceWith(...strong.childNodes);
      button.remove();
      setBell(unread);
    } catch (err) {
      button.disabled = false;
      toast(`Could not mark it read: ${err.message}`, { kind: "bad" });
    }
  });
  document.getElementById("read-all").addEventListener("click", async (e) => {
    e.target.disabled = true;
    try {
      const { unread } = await api("/notices/read-all", { method: "POST" });
      setBell(unread);
    } catch (err) {
      e.target.disabled = false;
      toast(`Could not mark them read: ${err.message}`, { kind: "bad" });
    }
  });
}
