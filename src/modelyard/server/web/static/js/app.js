// Entry point of every page: the live job-event connection, notices, and the
// page's own module (chosen by <body data-page>).
import { startJobEvents } from "./events.js";
import { watchEndings } from "./notify.js";

const PAGES = {
  jobs: () => import("./jobs.js"),
  job: () => import("./job.js"),
  new: () => import("./form.js"),
  queue: () => import("./queue.js"),
};

window.modelyard = { charts: {}, systemCharts: {} }; // for tests and the curious: the live uPlot instances

if (document.body.dataset.user) {
  watchEndings();
  startJobEvents();
}
const page = PAGES[document.body.dataset.page];
if (page) page().then((m) => m.start());
