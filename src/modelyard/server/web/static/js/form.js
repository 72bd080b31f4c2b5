// The create-job form: read and check the fields in the browser, upload the code
// (a folder or an archive, to POST /api/v1/snapshots/upload, with a progress bar),
// send the spec to POST /api/v1/jobs, and put every error (ours, or the API's
// error.field) beside its field; an upload's errors beside the code field.
import { api, upload } from "./api.js";

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
    params: [],
    tags: v("tags").split(/[\s,]+/).filter(Boolean),
  };
  if (form.elements.metric_patterns) {  // one a line, as written: a regex may hold spaces and commas
    const patterns = form.elements.metric_patterns.value.split("\n").map((l) => l.trim()).filter(Boolean);
    if (patterns.length) spec.metric_patterns = patterns;
  }
  form.querySelectorAll(".param-row").forEach((row) => {
    const name = row.querySelector("[name=param-name]").value.trim();
    const value = row.querySelector("[name=param-value]").value.trim();
    if (!name && !value) return;
    if (!name) errors.push(["params", `the parameter with value "${value}" has no name`]);
    else spec.params.push(`${name}=${value}`); // typed by the server, as --param NAME=VALUE is
  });
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

/** What the code field asks for: {kind, body (FormData to upload) | snapshot, resumeFrom, errors}. */
export function readCode(form) {
  const kind = form.querySelector("input[name=code]:checked")?.value || "none";
  const resume = form.querySelector("#f-resume");
  const code = { kind, resumeFrom: resume?.checked ? Number(resume.value) : null, errors: [] };
  if (kind === "folder") {
    const files = folderFiles(form.querySelector("#f-code-folder").files);
    if (!files.length) code.errors.push(["code", "choose a folder with files in it"]);
    code.body = new FormData();
    files.forEach(([path, file]) => code.body.append("file", file, path));
    code.count = files.length;
  } else if (kind === "archive") {
    const file = form.querySelector("#f-code-archive").files[0];
    if (!file) code.errors.push(["code", "choose a .zip or .tar.gz file"]);
    else if (!/\.(zip|tar\.gz|tgz)$/i.test(file.name)) code.errors.push(["code", `${file.name} is not a .zip, .tar.gz or .tgz file`]);
    code.body = new FormData();
    if (file) code.body.append("archive", file, file.name);
  } else if (kind === "job") {
    code.snapshot = form.querySelector("#f-code-job").value || null;
    if (!code.snapshot) code.errors.push(["code", "choose a job whose code to run"]);
  }
  return code;
}

// [path in the folder, File], .gitignore files first (shallowest first): the server drops the files
// they exclude as they arrive. Paths lose the chosen folder's own name; .git/ is never sent.
function folderFiles(list) {
  const files = Array.from(list, (f) => [(f.webkitRelativePath || f.name).split("/").slice(f.webkitRelativePath ? 1 : 0), f])
    .filter(([parts]) => parts.length && !parts.includes(".git"));
  const rank = ([parts]) => (parts[parts.length - 1] === ".gitignore" ? parts.length : 1000);
  return files.sort((a, b) => rank(a) - rank(b)).map(([parts, f]) => [parts.join("/"), f]);
}

function showProgress(form, fraction, text) {
  const box = form.querySelector(".upload");
  box.hidden = false;
  const pct = Math.round(fraction * 100);
  box.querySelector("progress").value = pct;
  box.querySelector("#code-progress-text").textContent = text || `uploading ${pct}%`;
}

async function sendCode(form, code) {
  if (!code.body) return code.snapshot || null;
  showProgress(form, 0);
  const done = await upload("/snapshots/upload", code.body, (f) => showProgress(form, f));
  showProgress(form, 1, `100%: ${done.files} files (${(done.bytes / 1024).toFixed(1)} KiB) uploaded`);
  return done.key;
}

function showError(form, field, message) {
  const name = (field || "").replace(/^spec\./, "").replace(/^(env|params|tags|metric_patterns)\..*/, "$1")
    .replace(/^(snapshot|resume_from)$/, "code");
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

function bindRows(form) {
  const rows = form.querySelector("#param-rows");
  const add = () => rows.append(form.querySelector("#param-row").content.cloneNode(true));
  if (!rows.children.length) add();
  form.querySelector("#add-param").addEventListener("click", () => { add(); rows.lastElementChild.querySelector("input").focus(); });
  rows.addEventListener("click", (e) => { if (e.target.closest(".remove-param")) e.target.closest(".param-row").remove(); });
  // choosing a folder, an archive or a job picks that kind of code
  for (const [id, kind] of [["#f-code-folder", "folder"], ["#f-code-archive", "archive"], ["#f-code-job", "job"]]) {
    form.querySelector(id).addEventListener("change", () => { form.querySelector(`input[name=code][value=${kind}]`).checked = true; });
  }
}

export function start() {
  const form = document.getElementById("new-job");
  bindRows(form);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const { spec, errors } = readSpec(form);
    const code = readCode(form);
    errors.push(...code.errors);
    if (errors.length) {
      errors.forEach(([field, message]) => showError(form, field, message));
      form.querySelector(".field.invalid :is(input, textarea)")?.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    let snapshot;
    try {
      snapshot = await sendCode(form, code);
    } catch (err) {
      form.querySelector(".upload").hidden = true;
      showError(form, "code", err.message); // too large, a bad archive: beside the code field, whatever its field
      button.disabled = false;
      return;
    }
    try {
      // a next round keeps what the form has no field for (nodes, node labels, webhooks)
      const extra = document.getElementById("round-extra");
      const body = { spec: { ...(extra ? JSON.parse(extra.textContent) : {}), ...spec }, snapshot };
      if (code.resumeFrom) body.resume_from = code.resumeFrom;
      const job = await api("/jobs", { method: "POST", body });
      location.assign(`/ui/jobs/${job.id}`);
    } catch (err) {
      const details = err.details.length ? err.details : [{ field: err.field, message: err.message }];
      details.forEach((d) => showError(form, d.field, d.message));
      button.disabled = false;
    }
  });
}
