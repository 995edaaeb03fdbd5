// One batch: live progress, a thumbnail grid, status filters, failed items with their error codes,
// "Replay failed" and per-item replay. Polls while anything is queued or processing.
import { api, errorBox, fetchBlob } from "../api.js";
import { announce, dl, formatMs, h, heading, poller, statusBadge, timeEl } from "../ui.js";
import { countChips, progressBar } from "./batches.js";

const FILTERS = ["all", "succeeded", "failed", "processing", "queued", "canceled"];
const ACTIVE = new Set(["queued", "processing"]);

export function render(main, { params }) {
  const [batchId] = params;
  const controller = new AbortController();
  const thumbs = new Map(); // job id + finish time -> blob URL
  let filter = "all";
  let batch = null;
  let items = [];
  let firstPage = [];
  let extra = []; // pages added with "Load more"; the first page is re-read on every poll
  let cursor = null;
  let wasComplete = null;

  const summary = h("section", { class: "card", "aria-label": "Progress" });
  const actionStatus = h("div", { class: "form-status", "aria-live": "polite" });
  const replayFailed = h("button", { type: "button", id: "replay-failed", text: "Replay failed", disabled: true });
  const filterBar = h("div", { class: "filters", role: "group", "aria-label": "Show items by status" });
  const grid = h("ul", { class: "thumb-grid", id: "items" });
  const more = h("button", { type: "button", class: "secondary", text: "Load more items", hidden: true });
  const loadError = h("div");

  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      loadThumb(entry.target);
    }
  }, { rootMargin: "200px" });

  function thumbKey(job) { return `${job.id}:${job.finished_at}`; }

  async function loadThumb(img) {
    const key = img.dataset.thumbKey;
    try {
      if (!thumbs.has(key)) thumbs.set(key, URL.createObjectURL(await fetchBlob(`/v2/jobs/${img.dataset.jobId}/result`, controller.signal)));
      img.src = thumbs.get(key);
      img.closest(".thumb").classList.remove("loading");
    } catch (err) {
      if (err.name !== "AbortError") img.replaceWith(h("span", { class: "muted", text: `preview failed: ${err.code || err.message}` }));
    }
  }

  function card(job) {
    const label = job.external_id || job.id;
    const thumb = h("div", { class: "thumb checkerboard loading" });
    if (job.status === "succeeded") {
      const img = h("img", { alt: `Result of ${label}`, dataset: { jobId: job.id, thumbKey: thumbKey(job) } });
      thumb.append(img);
      if (thumbs.has(thumbKey(job))) { img.src = thumbs.get(thumbKey(job)); thumb.classList.remove("loading"); }
      else observer.observe(img);
    } else {
      thumb.classList.remove("loading", "checkerboard");
      thumb.append(h("span", { class: `thumb-status status-${job.status}`, text: job.status }));
    }
    const body = h("div", { class: "thumb-body" },
      h("a", { href: `#/jobs/${job.id}`, class: "mono item-label", text: label }),
      statusBadge(job.status));
    if (job.error) {
      body.append(h("p", { class: "item-error" }, h("code", { class: "error-code", text: job.error.code }), " ",
        h("span", { text: job.error.message })));
    }
    if (["failed", "canceled"].includes(job.status)) {
      body.append(h("button", { type: "button", class: "secondary small", text: "Replay",
        "aria-label": `Replay ${label}`, onclick: (event) => replayOne(job, event.currentTarget) }));
    }
    return h("li", { class: `thumb-card status-${job.status}`, dataset: { jobId: job.id, status: job.status } }, thumb, body);
  }

  function drawSummary() {
    const eta = batch.eta_s === null ? "–" : formatMs(batch.eta_s * 1000);
    summary.replaceChildren(
      h("div", { class: "batch-head" }, statusBadge(batch.status), h("span", { class: "muted" }, "created ", timeEl(batch.created_at))),
      progressBar(batch, "Batch progress"),
      countChips(batch.counts),
      dl([["Throughput", `${batch.throughput_per_s} items/s`], ["ETA", eta],
        ["Completed", timeEl(batch.completed_at)],
        ["Metadata", batch.metadata ? h("code", { text: JSON.stringify(batch.metadata) }) : "–"]]));
    replayFailed.textContent = `Replay failed (${batch.counts.failed})`;
    replayFailed.disabled = batch.counts.failed === 0;
    if (!filterBar.children.length) {
      filterBar.append(...FILTERS.map((name) => h("button", { type: "button", class: "filter", dataset: { filter: name },
        onclick: () => { filter = name; cursor = null; extra = []; refresh(); } })));
    }
    for (const button of filterBar.children) {
      const name = button.dataset.filter;
      button.textContent = `${name} (${name === "all" ? batch.total : batch.counts[name]})`;
      button.setAttribute("aria-pressed", String(filter === name));
    }
  }

  function combine() {
    const ids = new Set(firstPage.map((j) => j.id));
    items = firstPage.concat(extra.filter((j) => !ids.has(j.id)));
  }

  function drawGrid() {
    const existing = new Map([...grid.children].map((li) => [li.dataset.jobId, li]));
    const next = items.map((job) => {
      const old = existing.get(job.id);
      return old && old.dataset.status === job.status ? old : card(job);
    });
    grid.replaceChildren(...next);
    if (!items.length) grid.append(h("li", { class: "muted", text: filter === "all" ? "No items." : `No ${filter} items.` }));
    more.hidden = !cursor;
  }

  async function refresh() {
    try {
      const query = new URLSearchParams({ limit: "200" });
      if (filter !== "all") query.set("status", filter);
      const fresh = await api(`/v2/batches/${batchId}?${query}`, { signal: controller.signal });
      batch = fresh;
      firstPage = fresh.items.data;
      if (!extra.length) cursor = fresh.items.next_cursor;
      combine();
      loadError.replaceChildren();
      drawSummary();
      drawGrid();
      const complete = batch.status === "completed";
      if (wasComplete === false && complete) announce(`Batch completed: ${batch.counts.succeeded} succeeded, ${batch.counts.failed} failed.`);
      wasComplete = complete;
    } catch (err) {
      if (err.name !== "AbortError") loadError.replaceChildren(errorBox(err, "Could not load the batch"));
    }
  }

  async function loadMore() {
    const query = new URLSearchParams({ limit: "200", cursor });
    if (filter !== "all") query.set("status", filter);
    try {
      const page = await api(`/v2/batches/${batchId}?${query}`, { signal: controller.signal });
      extra = extra.concat(page.items.data);
      cursor = page.items.next_cursor;
      combine();
      drawGrid();
    } catch (err) {
      if (err.name !== "AbortError") loadError.replaceChildren(errorBox(err, "Could not load more items"));
    }
  }
  more.addEventListener("click", loadMore);

  const live = poller(async () => {
    if (!batch || batch.status !== "completed" || items.some((j) => ACTIVE.has(j.status))) await refresh();
  }, 1000);

  replayFailed.addEventListener("click", async () => {
    replayFailed.disabled = true;
    actionStatus.replaceChildren(h("p", { class: "busy", text: "Replaying the failed items…" }));
    try {
      const answer = await api(`/v2/batches/${batchId}/replay`, { method: "POST" });
      actionStatus.replaceChildren(h("p", { text: `Replaying ${answer.replayed} item(s).` }));
      announce(`Replaying ${answer.replayed} items.`);
      wasComplete = false;
      await refresh();
    } catch (err) {
      actionStatus.replaceChildren(errorBox(err, "Replay failed"));
      replayFailed.disabled = false;
    }
  });

  async function replayOne(job, button) {
    button.disabled = true;
    try {
      await api(`/v2/jobs/${job.id}/replay`, { method: "POST" });
      actionStatus.replaceChildren(h("p", { text: `Replaying ${job.external_id || job.id}.` }));
      wasComplete = false;
      await refresh();
    } catch (err) {
      actionStatus.replaceChildren(errorBox(err, `Replay of ${job.external_id || job.id} failed`));
      button.disabled = false;
    }
  }

  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/batches", text: "← Batches" })),
    heading(`Batch ${batchId}`), loadError, summary,
    h("div", { class: "actions" }, replayFailed), actionStatus,
    h("h2", { text: "Items" }), filterBar, grid, more);
  refresh().then(() => live.start());
  return () => {
    live.stop();
    controller.abort();
    observer.disconnect();
    for (const url of thumbs.values()) URL.revokeObjectURL(url);
  };
}
