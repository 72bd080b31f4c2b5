// The live log of one attempt, for logs of any length.
//
// It never holds the whole log: it fetches the last PAGE lines first
// (/logs/size, then /logs?offset=&limit=), follows new lines from
// /logs/stream while the attempt runs, and fetches earlier ranges as the
// reader scrolls up. While following it sticks to the end; once the reader
// scrolls up it holds its place (new lines still arrive below) until they
// press "follow" or scroll back to the end. At most MAX_LINES stay in the DOM.
import { api } from "./api.js";

const PAGE = 1000;
const MAX_LINES = 5000;

export class LogView {
  constructor(box, jobId, followButton) {
    this.box = box;
    this.list = box.querySelector(".log-lines");
    this.jobId = jobId;
    this.followButton = followButton;
    this.generation = 0;
    box.addEventListener("scroll", () => this.onScroll(), { passive: true });
    followButton.addEventListener("click", () => this.open(this.attempt));
  }

  async open(attempt) {
    const gen = ++this.generation;
    this.closeStream();
    Object.assign(this, { following: true, paused: false, pending: [], busy: false });
    this.followButton.hidden = true;
    const q = attempt ? `?attempt=${attempt}` : "";
    const size = await api(`/jobs/${this.jobId}/logs/size${q}`);
    if (gen !== this.generation) return;
    this.attempt = size.attempt;
    this.first = Math.max(0, size.lines - PAGE);
    const page = await this.fetch(this.first, PAGE);
    if (gen !== this.generation) return;
    this.list.replaceChildren(...page.lines.map(renderLine));
    this.next = page.next_offset;
    this.scrollToEnd();
    if (!page.done) this.stream(gen);
  }

  fetch(offset, limit) {
    return api(`/jobs/${this.jobId}/logs?attempt=${this.attempt}&offset=${offset}&limit=${limit}`);
  }

  stream(gen) {
    if (!this.attempt) { // not placed yet: job.js reopens the log when the first attempt starts
      return;
    }
    const url = `/api/v1/jobs/${this.jobId}/logs/stream?attempt=${this.attempt}&offset=${this.next}`;
    const source = new EventSource(url);
    this.source = source;
    source.addEventListener("line", (msg) => {
      this.pending.push(JSON.parse(msg.data));
      if (this.pending.length === 1) requestAnimationFrame(() => this.flush());
    });
    source.addEventListener("end", () => this.closeStream());
    source.addEventListener("error", () => { // reconnect from where we are, not from the first URL's offset
      this.closeStream();
      setTimeout(() => gen === this.generation && !this.paused && this.stream(gen), 1000);
    });
  }

  closeStream() {
    this.source?.close();
    this.source = null;
  }

  flush() {
    const fresh = this.pending.filter((line) => line.n >= this.next);
    this.pending = [];
    if (!fresh.length) return;
    this.list.append(...fresh.map(renderLine));
    this.next = fresh[fresh.length - 1].n + 1;
    if (this.following) {
      this.trimTop();
      this.scrollToEnd();
    } else if (this.list.childElementCount > 2 * MAX_LINES) {
      this.pause(); // the reader is elsewhere; stop growing the page until they come back
    }
  }

  onScroll() {
    const atEnd = this.box.scrollHeight - this.box.scrollTop - this.box.clientHeight < 40;
    this.following = atEnd && !this.paused;
    this.followButton.hidden = atEnd && !this.paused;
    if (this.busy) return;
    if (this.box.scrollTop < 200 && this.first > 0) this.loadEarlier();
    else if (atEnd && this.paused) this.loadLater();
  }

  async loadEarlier() {
    this.busy = true;
    const from = Math.max(0, this.first - PAGE);
    const page = await this.fetch(from, this.first - from);
    const before = this.box.scrollHeight;
    this.list.prepend(...page.lines.map(renderLine));
    this.first = from;
    this.box.scrollTop += this.box.scrollHeight - before; // hold the reader's place
    if (this.list.childElementCount > MAX_LINES) this.trimBottom();
    this.busy = false;
  }

  async loadLater() {
    this.busy = true;
    const page = await this.fetch(this.next, PAGE);
    this.list.append(...page.lines.map(renderLine));
    this.next = page.next_offset;
    this.trimTop();
    if (page.lines.length < PAGE) {
      this.paused = false;
      this.following = true;
      if (!page.done) this.stream(this.generation);
    }
    this.busy = false;
  }

  pause() {
    this.paused = true;
    this.closeStream();
    this.followButton.hidden = false;
  }

  trimTop() {
    const extra = this.list.childElementCount - MAX_LINES;
    if (extra <= 0) return;
    const before = this.box.scrollHeight;
    for (let i = 0; i < extra; i++) this.list.firstElementChild.remove();
    this.first += extra;
    if (!this.following) this.box.scrollTop -= before - this.box.scrollHeight;
  }

  trimBottom() {
    const extra = this.list.childElementCount - MAX_LINES;
    for (let i = 0; i < extra; i++) this.list.lastElementChild.remove();
    this.next -= extra;
    this.pause();
  }

  scrollToEnd() {
    this.box.scrollTop = this.box.scrollHeight;
  }

  lineCount() {
    return this.list.childElementCount;
  }
}

function renderLine(line) {
  const row = document.createElement("div");
  row.className = line.stream === "stderr" ? "ln err" : "ln";
  row.dataset.n = line.n;
  row.textContent = line.text;
  return row;
}
