// Batches: start one from a list of image URLs; list them with progress bars and counts.
import { api, errorBox } from "../api.js";
import { field, h, heading, poller, select, statusBadge, timeEl } from "../ui.js";

export function progressBar(batch, label) {
  const done = batch.counts.succeeded + batch.counts.failed + batch.counts.canceled;
  const percent = Math.round((batch.progress || 0) * 100);
  return h("div", { class: "progress-wrap" },
    h("progress", { max: String(batch.total || 1), value: String(done), "aria-label": label || `Progress of ${batch.id}` }),
    h("span", { class: "progress-text", text: `${percent}% · ${done} of ${batch.total}` }));
}

export function countChips(counts) {
  return h("ul", { class: "chips", "aria-label": "Items by status" },
    ["succeeded", "failed", "processing", "queued", "canceled"].filter((s) => counts[s] || s === "succeeded" || s === "failed")
      .map((s) => h("li", { class: `chip status-${s}`, text: `${counts[s]} ${s}` })));
}

function parseItems(text) {
  const items = [];
  text.split(/\r?\n/).forEach((line, index) => {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith("#")) return;
    const [url, externalId] = trimmed.split(/[\s,]+/, 2);
    if (!/^https?:\/\//i.test(url)) throw new Error(`Line ${index + 1}: "${url}" is not an http(s) URL.`);
    items.push(externalId ? { image_url: url, external_id: externalId } : { image_url: url });
  });
  if (!items.length) throw new Error("Enter at least one image URL.");
  return items;
}

export function render(main) {
  const controller = new AbortController();
  const urls = h("textarea", { id: "batch-urls", rows: "5", spellcheck: "false",
    placeholder: "https://example.com/shoe-1.jpg SKU-1\nhttps://example.com/shoe-2.jpg SKU-2" });
  const urlField = field("Image URLs, one per line (optionally followed by an external id)", urls);
  const format = field("Format", select([["png", "PNG"], ["webp", "WebP"], ["jpg", "JPEG"]], "png"));
  const size = field("Size", select([["full", "Full"], ["hd", "HD"], ["medium", "Medium"], ["preview", "Preview"]], "full"));
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const create = h("button", { type: "submit", text: "Start batch" });
  const form = h("form", { class: "card", novalidate: true },
    h("h2", { text: "New batch" }), urlField.wrap,
    h("div", { class: "option-grid" }, format.wrap, size.wrap),
    h("div", { class: "actions" }, create), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    let items;
    try {
      items = parseItems(urls.value);
    } catch (err) {
      status.append(h("p", { class: "error-box", role: "alert", text: err.message }));
      urls.focus();
      return;
    }
    create.disabled = true;
    try {
      const batch = await api("/v2/batches", { method: "POST",
        json: { items, options: { format: format.input.value, size: size.input.value } } });
      window.location.hash = `#/batches/${batch.id}`;
    } catch (err) {
      status.append(errorBox(err, "The batch was not created"));
    } finally {
      create.disabled = false;
    }
  });

  const listStatus = h("div", { "aria-live": "polite" });
  const list = h("ul", { class: "batch-list", id: "batch-list" });
  const more = h("button", { type: "button", class: "secondary", text: "Load more", hidden: true });
  let cursor = null;
  let loaded = [];

  function row(batch) {
    return h("li", { class: "card batch-row", dataset: { batchId: batch.id } },
      h("div", { class: "batch-head" },
        h("a", { href: `#/batches/${batch.id}`, class: "mono", text: batch.id }),
        statusBadge(batch.status),
        h("span", { class: "muted" }, "created ", timeEl(batch.created_at))),
      progressBar(batch),
      countChips(batch.counts));
  }

  function draw() {
    list.replaceChildren(...loaded.map(row));
    if (!loaded.length) list.append(h("li", { class: "muted", text: "No batches yet. Start one above or with POST /v2/batches." }));
  }

  async function load(append) {
    try {
      const path = append && cursor ? `/v2/batches?limit=20&cursor=${encodeURIComponent(cursor)}` : "/v2/batches?limit=20";
      const page = await api(path, { signal: controller.signal });
      if (append) loaded = loaded.concat(page.data);
      else {
        // refresh the first page in place, keep pages loaded with "Load more"
        const ids = new Set(page.data.map((b) => b.id));
        loaded = page.data.concat(loaded.slice(page.data.length).filter((b) => !ids.has(b.id)));
      }
      if (append || !cursor) cursor = page.next_cursor;
      more.hidden = !cursor;
      listStatus.replaceChildren();
      draw();
    } catch (err) {
      if (err.name !== "AbortError") listStatus.replaceChildren(errorBox(err, "Could not list batches"));
    }
  }
  more.addEventListener("click", () => load(true));

  const refresh = poller(async () => {
    if (loaded.some((b) => b.status === "processing")) await load(false);
  }, 2000);

  main.append(heading("Batches"), form, h("h2", { text: "Recent batches" }), listStatus, list, more);
  load(false).then(() => refresh.start());
  return () => { refresh.stop(); controller.abort(); };
}
