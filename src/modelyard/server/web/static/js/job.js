// Job page: the buttons, and the live parts (log, metric charts, system charts)
// that follow the job while it runs and stop polling once it has ended.
import { api, TERMINAL } from "./api.js";
import { toast } from "./notify.js";
import { LogView } from "./logview.js";
import { MetricCharts, SystemCharts } from "./charts.js";

const POLL_MS = 2000;

export function start() {
  const root = document.getElementById("job");
  const id = Number(root.dataset.jobId);
  const view = { id, state: root.dataset.state, attempt: Number(root.dataset.attempt) };
  const log = new LogView(document.getElementById("log"), id, document.getElementById("log-follow"),
    document.getElementById("log-node"));
  const charts = new MetricCharts(document.getElementById("charts"), [id], document.getElementById("reset-zoom"));
  const system = new SystemCharts(document.getElementById("system-charts"), id);
  charts.labels[id] = `#${id} ${root.dataset.jobName}`;
  Object.assign(window.modelyard, { log, metricCharts: charts });

  log.open(view.attempt || null);
  charts.refresh();
  system.refresh();
  setInterval(() => {
    if (TERMINAL.has(view.state) && !charts.comparing()) return;
    charts.refresh();
    system.refresh();
  }, POLL_MS);

  document.addEventListener("modelyard:job", ({ detail: job }) => onJobEvent(view, job, log, charts, system));
  document.getElementById("log-attempt").addEventListener("change", (e) => log.open(Number(e.target.value)));
  document.getElementById("x-axis").addEventListener("change", (e) => charts.setAxis(e.target.value));
  document.getElementById("compare").addEventListener("change", (e) => charts.setJobs([id, ...parseIds(e.target.value, id)]));
  document.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action]");
    if (button) act(id, button);
    const remove = e.target.closest("button[data-remove-tag]");
    if (remove) changeTags(id, { remove: [remove.dataset.removeTag] });
  });
  document.getElementById("tag-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = document.getElementById("tag-input");
    const tags = input.value.split(/[\s,]+/).filter(Boolean);
    if (tags.length) changeTags(id, { add: tags }).then((ok) => { if (ok) input.value = ""; });
  });
}

async function changeTags(id, body) {
  const error = document.getElementById("tag-error");
  try {
    const { tags } = await api(`/jobs/${id}/tags`, { method: "POST", body });
    error.hidden = true;
    showTags(tags);
    return true;
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
    return false;
  }
}

function showTags(tags) {
  const box = document.getElementById("tags");
  box.replaceChildren(...tags.map((t) => {
    const chip = document.createElement("span");
    chip.className = "tag";
    chip.dataset.tag = t;
    const link = document.createElement("a");
    link.href = `/ui/jobs?q=${encodeURIComponent(`tag:${t}`)}`;
    link.textContent = t;
    const remove = document.createElement("button");
    Object.assign(remove, { type: "button", className: "remove", textContent: "×" });
    remove.dataset.removeTag = t;
    remove.setAttribute("aria-label", `remove tag ${t}`);
    chip.append(link, remove);
    return chip;
  }));
}

function onJobEvent(view, job, log, charts, system) {
  if (job.id !== view.id) return;
  view.state = job.state;
  document.getElementById("job").dataset.state = job.state;
  window.htmx.trigger("#job-live", "refresh");
  if (job.attempt !== view.attempt) {
    view.attempt = job.attempt;
    const select = document.getElementById("log-attempt");
    select.prepend(new Option(String(job.attempt), String(job.attempt), true, true));
    log.open(job.attempt);
  }
  if (TERMINAL.has(job.state)) { charts.refresh(); system.refresh(); } // the last points
}

function parseIds(text, self) {
  return text.split(/[\s,]+/).map(Number).filter((n) => Number.isInteger(n) && n > 0 && n !== self);
}

async function act(id, button) {
  const action = button.dataset.action;
  if (!window.confirm(button.dataset.confirm)) return;
  button.disabled = true;
  try {
    if (action === "clone") {
      const resume = document.getElementById("clone-resume")?.checked ?? false;
      const job = await api(`/jobs/${id}/clone`, { method: "POST", body: { resume } });
      location.assign(`/ui/jobs/${job.id}`);
      return;
    }
    if (action === "remove" || action === "remove-keep-final") {
      const keep = action === "remove-keep-final";
      await api(`/jobs/${id}${keep ? "?keep_final=true" : ""}`, { method: "DELETE" });
      if (keep) location.reload();
      else location.assign("/ui/jobs");
      return;
    }
    const job = await api(`/jobs/${id}/${action}`, { method: "POST" });
    toast(`Job #${id}: ${action === "stop" ? "stop requested" : `attempt ${job.attempt + 1} queued`}`);
    window.htmx.trigger("#job-live", "refresh");
  } catch (err) {
    toast(`Could not ${action} job #${id}: ${err.message}`, { kind: "bad" });
    button.disabled = false;
  }
}
