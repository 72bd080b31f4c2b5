// Entry point of every page: the live job-event connection, notices, and the
// page's own module (chosen by <body data-page>).
import { startJobEvents } from "./events.js";
import { watchEndings } from "./notify.js";
import { watchBell } from "./bell.js";

const PAGES = {
  jobs: () => import("./jobs.js"),
  job: () => import("./job.js"),
  new: () => import("./form.js"),
  queue: () => import("./queue.js"),
  notices: () => import("./notices.js"),
  settings: () => import("./settings.js"),
  users: () => import("./users.js"),
  compare: () => import("./compare.js"),
  sweep: () => import("./sweep.js"),
};

window.modelyard = { charts: {}, systemCharts: {} }; // for tests and the curious: the live uPlot instances

// The live connection opens last: once htmx has set up the page (on DOMContentLoaded)
// and the page's module listens. The stream replays every change since the page was
// built, so nothing is missed by waiting, while an event handled before then would
// trigger a refresh nobody listens for yet.
async function main() {
  if (document.readyState === "loading") {
    await new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }));
  }
  const page = PAGES[document.body.dataset.page];
  if (page) (await page()).start();
  // the page's buttons and forms answer from here on (a click before would be lost): tests wait for it
  document.documentElement.dataset.ready = "true";
  if (document.body.dataset.user) {
    watchEndings();
    watchBell();
    startJobEvents();
  }
}
main();
