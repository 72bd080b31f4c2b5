// Settings page: the email and the event × channel choices, saved in one PATCH /profile.
import { api } from "./api.js";

export function start() {
  const form = document.getElementById("settings-form");
  const status = document.getElementById("settings-status");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const notify = {};
    for (const box of form.querySelectorAll("input[type=checkbox]")) {
      const [event, channel] = box.name.split(":");
      notify[event] ??= [];
      if (box.checked) notify[event].push(channel);
    }
    status.className = "";
    status.textContent = "Saving…";
    try {
      const saved = await api("/profile", { method: "PATCH", body: { email: form.email.value.trim() || null, notify } });
      form.email.value = saved.email || "";
      status.textContent = "Saved.";
    } catch (err) {
      status.className = "error";
      status.textContent = err.field ? `${err.field}: ${err.message}` : err.message;
    }
  });
}
