// Jobs: filter on the server (status, batch, created after), search the loaded rows as you type.
import { api, errorBox } from "../api.js";
import { field, h, heading, select, statusBadge, timeEl } from "../ui.js";

const JOB_ID = /^job_[0-9a-f]{32}$/;

export function render(main) {
  const controller = new AbortController();
  const search = field("Search", h("input", { type: "search", id: "job-search", autocomplete: "off" }),
    "Job id, external id, batch id, error code or status; a full job id opens it.");
  const status = field("Status", select([["", "Any"], "queued", "processing", "succeeded", "failed", "canceled"], ""));
  const after = field("Created after", h("input", { type: "date", id: "job-after" }));
  const batch = field("Batch id", h("input", { type: "text", id: "job-batch", autocomplete: "off", spellcheck: "false" }));
  const form = h("form", { class: "card filters-form", role: "search" },
    h("div", { class: "option-grid" }, search.wrap, status.wrap, after.wrap, batch.wrap),
    h("div", { class: "actions" }, h("button", { type: "submit", text: "Search" })));
  const note = h("p", { class: "muted", "aria-live": "polite" });
  const errors = h("div");
  const body = h("tbody");
  const table = h("div", { class: "table-wrap", role: "region", "aria-label": "Jobs", tabindex: "0" },
    h("table", { class: "jobs-table", id: "jobs-table" },
      h("thead", {}, h("tr", {}, ...["Job", "Status", "Created", "Source", "External id", "Batch", "Error", "Attempts"]
        .map((label) => h("th", { scope: "col", text: label })))),
      body));
  const more = h("button", { type: "button", class: "secondary", text: "Load more", hidden: true });
  let rows = [];
  let cursor = null;

  function matches(job, needle) {
    if (!needle) return true;
    return [job.id, job.external_id, job.batch_id, job.status, job.source, job.error && job.error.code,
      job.metadata && JSON.stringify(job.metadata)].some((v) => v && String(v).toLowerCase().includes(needle));
  }

  function draw() {
    const needle = search.input.value.trim().toLowerCase();
    const shown = rows.filter((job) => matches(job, needle));
    body.replaceChildren(...shown.map((job) => h("tr", { dataset: { jobId: job.id } },
      h("td", {}, h("a", { href: `#/jobs/${job.id}`, class: "mono", text: job.id })),
      h("td", {}, statusBadge(job.status)),
      h("td", {}, timeEl(job.created_at)),
      h("td", { text: job.source }),
      h("td", { text: job.external_id || "–" }),
      h("td", {}, job.batch_id ? h("a", { href: `#/batches/${job.batch_id}`, class: "mono", text: job.batch_id.slice(0, 14) + "…" }) : "–"),
      h("td", {}, job.error ? h("code", { text: job.error.code }) : "–"),
      h("td", { text: String(job.attempts) }))));
    note.textContent = `${shown.length} of ${rows.length} loaded job(s) shown${cursor ? "; more on the server" : ""}.`;
    if (!shown.length) body.append(h("tr", {}, h("td", { colspan: "8", class: "muted", text: "No matching jobs." })));
    more.hidden = !cursor;
  }

  async function load(append) {
    const query = new URLSearchParams({ limit: "50" });
    if (status.input.value) query.set("status", status.input.value);
    if (batch.input.value.trim()) query.set("batch", batch.input.value.trim());
    if (after.input.value) query.set("created_after", new Date(`${after.input.value}T00:00:00`).toISOString());
    if (append && cursor) query.set("cursor", cursor);
    try {
      const page = await api(`/v2/jobs?${query}`, { signal: controller.signal });
      rows = append ? rows.concat(page.data) : page.data;
      cursor = page.next_cursor;
      errors.replaceChildren();
      draw();
    } catch (err) {
      if (err.name !== "AbortError") errors.replaceChildren(errorBox(err, "Could not list jobs"));
    }
  }

  search.input.addEventListener("input", draw);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const needle = search.input.value.trim();
    if (JOB_ID.test(needle)) { window.location.hash = `#/jobs/${needle}`; return; }
    load(false);
  });
  more.addEventListener("click", () => load(true));
  main.append(heading("Jobs"), form, errors, note, table, more);
  load(false);
  return () => controller.abort();
}
