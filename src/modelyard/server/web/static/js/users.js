// Users page (admins): quotas saved, the admin flag toggled, tokens revoked (after a
// confirm) through the /users API routes; the page is reloaded after each change so
// what it shows is what the server holds.
import { api } from "./api.js";

export function start() {
  for (const form of document.querySelectorAll("form.quota-form")) form.addEventListener("submit", saveQuota);
  for (const box of document.querySelectorAll("input.admin-toggle")) box.addEventListener("change", toggleAdmin);
  for (const button of document.querySelectorAll("button.revoke")) button.addEventListener("click", revoke);
}

const userOf = (el) => encodeURIComponent(el.closest("tr").dataset.user);

async function saveQuota(event) {
  event.preventDefault();
  const form = event.target;
  const body = {};
  for (const key of ["gpus", "cpus", "queued"]) {
    const raw = form.elements[key].value.trim();
    body[key] = raw === "" ? null : Number(raw);
  }
  await change(form, () => api(`/users/${userOf(form)}/quota`, { method: "PUT", body }));
}

async function toggleAdmin(event) {
  const box = event.target;
  await change(box.closest("tr").querySelector("form"),
    () => api(`/users/${userOf(box)}/admin`, { method: "PUT", body: { admin: box.checked } }),
    () => { box.checked = !box.checked; });
}

async function revoke(event) {
  const button = event.target;
  if (!window.confirm(button.dataset.confirm)) return;
  const row = button.closest("tr");
  await change(null, () => api(`/users/${userOf(button)}/tokens/${row.dataset.token}`, { method: "DELETE" }));
}

async function change(form, call, undo = () => {}) {
  const error = form && form.querySelector(".form-error");
  if (error) error.textContent = "";
  try {
    await call();
    location.reload();
  } catch (err) {
    undo();
    if (error) error.textContent = err.field ? `${err.field}: ${err.message}` : err.message;
    else window.alert(err.message);
  }
}
