// The create-job form: read and check the fields in the browser, send the spec
// to POST /api/v1/jobs, and put every error (ours, or the API's error.field)
// beside its field.
import { api } from "./api.js";

const SIZE = /^\s*\d+(\.\d+)?\s*([kmgtp]i?)?b?\s*$/i;
const DURATION = /^\s*(\d+(\.\d+)?\s*(d|h|m|s|ms)?\s*)+$/i;

/** {spec, errors: [[field, message]]} from the form's fields. */
export function readSpec(form) {
  const v = (name) => form.elements[name].value.trim();
  const errors = [];
  const number = (name, { integer = false, min = -Infinity, max = Infinity } = {}) => {
    const text = v(name);
    const n = Number(text);
    if (text === "" || !Number.isFinite(n)) errors.push([name, "must be a number"]);
    else if (integer && !Number.isInteger(n)) errors.push([name, "must be a whole number"]);
    else if (n < min || n > max) errors.push([name, max === Infinity ? `must be at least ${min}` : `must be between ${min} and ${max}`]);
    return n;
  };
  const spec = {
    command: v("command"),
    resources: {
      gpus: number("resources.gpus", { integer: true, min: 0 }),
      cpus: number("resources.cpus", { min: 0 }),
    },
    priority: number("priority", { integer: true, min: -1000, max: 1000 }),
    retries: number("retries", { integer: true, min: 0, max: 100 }),
    env: {},
  };
  if (!spec.command) errors.push(["command", "the command is empty"]);
  if (v("name")) spec.name = v("name");
  if (form.elements.dataset && v("dataset")) spec.dataset = v("dataset");
  // what it runs in: at most one of a named environment, an image and requirements
  const runsIn = ["environment", "image", "requirements"].filter((name) => form.elements[name] && v(name));
  runsIn.forEach((name) => { spec[name] = name === "requirements" ? form.elements[name].value : v(name); });
  runsIn.slice(1).forEach((name) => errors.push([name, `give one of a named environment, an image and requirements, not ${runsIn.join(" and ")}`]));
  if (v("name").length > 200) errors.push(["name", "at most 200 characters"]);
  if (v("resources.memory")) {
    if (SIZE.test(v("resources.memory"))) spec.resources.memory = v("resources.memory");
    else errors.push(["resources.memory", "not a size (use e.g. 512M, 8G)"]);
  }
  for (const name of ["max_runtime", "sync_interval"]) {
    if (!DURATION.test(v(name))) errors.push([name, "not a duration (use e.g. 90s, 30m, 72h, 1h30m)"]);
    else spec[name] = v(name);
  }
  v("env").split("\n").map((l) => l.trim()).filter(Boolean).forEach((line) => {
    const eq = line.indexOf("=");
    if (eq < 1) errors.push(["env", `"${line}" is not KEY=value`]);
    else spec.env[line.slice(0, eq)] = line.slice(eq + 1);
  });
  return { spec, errors };
}

function showError(form, field, message) {
  const name = (field || "").replace(/^spec\./, "").replace(/^env\..*/, "env");
  const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`) || form.querySelector('[data-error-for=""]');
  slot.textContent = slot.dataset.errorFor ? message : `${field ? `${field}: ` : ""}${message}`;
  slot.hidden = false;
  slot.closest(".field")?.classList.add("invalid");
  return slot;
}

function clearErrors(form) {
  form.querySelectorAll("[data-error-for]").forEach((el) => { el.hidden = true; el.textContent = ""; });
  form.querySelectorAll(".field.invalid").forEach((el) => el.classList.remove("invalid"));
}

export function start() {
  const form = document.getElementById("new-job");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const { spec, errors } = readSpec(form);
    if (errors.length) {
      errors.forEach(([field, message]) => showError(form, field, message));
      form.querySelector(".field.invalid :is(input, textarea)")?.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const job = await api("/jobs", { method: "POST", body: { spec } });
      location.assign(`/ui/jobs/${job.id}`);
    } catch (err) {
      const details = err.details.length ? err.details : [{ field: err.field, message: err.message }];
      details.forEach((d) => showError(form, d.field, d.message));
      button.disabled = false;
    }
  });
}
