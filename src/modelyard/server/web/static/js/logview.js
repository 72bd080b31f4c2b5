// The live log of one attempt, for logs of any length.
//
// It never holds the whole log: it fetches the last PAGE lines first
// (/logs/size, then /logs?offset=&limit=), follows new lines from
// /logs/stream while the attempt runs, and fetches earlier ranges as the
// reader scrolls up. While following it sticks to the end; once the reader
// scrolls up it holds its place (new lines still arrive below) until they
// press "follow" or scroll back to the end. At most MAX_LINES stay in the DOM.
// A job on several nodes shows each line's node rank, and the node select
// narrows the view to one node's lines (?node=R; line numbers stay the attempt's).
import { api } from "./api.js";

const PAGE = 1000;
const MAX_LINES = 5000;

export class LogView {
  constructor(box, jobId, followButton, nodeSelect = null) {
    this.box = box;
    this.nodeSelect = nodeSelect;
    this.node = null; // null: every node's lines
    this.nodes = 1;
    nodeSelect?.addEventListener("change", (e) => {
      this.node = e.target.value === "" ? null : Number(e.target.value);
      this.open(this.attempt);
    });
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
    this.showNodes(page.nodes || 1);
    this.list.replaceChildren(...page.lines.map((l) => this.render(l)));
    this.next = page.next_offset;
    this.scrollToEnd();
    if (!page.done) this.stream(gen);
  }

  fetch(offset, limit) {
    return api(`/jobs/${this.jobId}/logs?attempt=${this.attempt}&offset=${offset}&limit=${limit}${this.nodeQuery()}`);
  }

  nodeQuery() {
    return this.node === null ? "" : `&node=${this.node}`;
  }

  showNodes(nodes) {
    this.nodes = nodes;
    const select = this.nodeSelect;
    if (!select) return;
    select.closest("label").hidden = nodes < 2;
    if (select.options.length !== nodes + 1) {
      select.replaceChildren(new Option("all", ""), ...Array.from({ length: nodes }, (_, r) => new Option(String(r), String(r))));
      select.value = this.node === null ? "" : String(this.node);
    }
  }

  render(line) {
    return renderLine(line, this.nodes > 1 && this.node === null);
  }

  stream(gen) {
    if (!this.attempt) { // not placed yet: job.js reopens the log when the first attempt starts
      return;
    }
    const url = `/api/v1/jobs/${this.jobId}/logs/stream?attempt=${this.attempt}&offset=${this.next}${this.nodeQuery()}`;
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
    this.list.append(...fresh.map((l) => this.render(l)));
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
    // filtered by node, a page can run past the lines already shown
    this.list.prepend(...page.lines.filter((l) => l.n < this.first).map((l) => this.render(l)));
    this.first = from;
    this.box.scrollTop += this.box.scrollHeight - before; // hold the reader's place
    if (this.list.childElementCount > MAX_LINES) this.trimBottom();
    this.busy = false;
  }

  async loadLater() {
    this.busy = true;
    const page = await this.fetch(this.next, PAGE);
    this.list.append(...page.lines.map((l) => this.render(l)));
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

function renderLine(line, tagged) {
  const row = document.createElement("div");
  row.className = line.stream === "stderr" ? "ln err" : "ln";
  row.dataset.n = line.n;
  row.dataset.node = line.node || 0;
  if (tagged) {
    const tag = document.createElement("span");
    tag.className = "node";
    tag.textContent = `[node ${line.node || 0}] `;
    row.append(tag);
  }
  row.append(document.createTextNode(line.text));
  return row;
}
