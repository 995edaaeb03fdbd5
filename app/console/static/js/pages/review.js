// Review: the cutouts flagged needs_review (confidence below the threshold), grouped by batch, newest
// batch first, on a checkerboard. Accept clears the flag (recorded on the job); Replay runs the job again
// with another model and shows the new cutout's own confidence; Download saves the cutout.
import { api, errorBox, fetchBlob } from "../api.js";
import { announce, extensionFor, h, heading, select, timeEl } from "../ui.js";

const MODELS = [["quality", "quality preset"], ["fast", "fast preset"], ["soft", "soft preset (hair, fur)"], ["isnet-general", "ISNet"], ["u2net", "U2-Net"]];
const ACTIVE = new Set(["queued", "processing"]);

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); reject(new DOMException("aborted", "AbortError")); });
  });
}

export function render(main) {
  const controller = new AbortController();
  const note = h("p", { class: "muted", "aria-live": "polite" });
  const errors = h("div");
  const groups = h("div", { id: "review-groups" });
  let count = 0;

  function setNote() {
    note.textContent = count ? `${count} cutout(s) to review.` : "Nothing to review: every cutout is above its threshold or accepted.";
  }

  function label(job) { return job.external_id || job.id; }

  function confidenceText(job) {
    const score = job.result && job.result.confidence;
    return score === null || score === undefined ? "confidence –" : `confidence ${score.toFixed(2)}`;
  }

  async function showCutout(job, thumb, download) {
    thumb.replaceChildren();
    thumb.classList.add("loading");
    try {
      const blob = await fetchBlob(`/v2/jobs/${job.id}/result`, controller.signal);
      const url = URL.createObjectURL(blob);
      thumb.append(h("img", { src: url, alt: `Cutout of ${label(job)}` }));
      thumb.classList.remove("loading");
      download.href = url;
      download.download = `${label(job)}.${extensionFor(blob.type)}`;
      download.hidden = false;
    } catch (err) {
      if (err.name !== "AbortError") thumb.replaceChildren(h("span", { class: "muted", text: `preview failed: ${err.code || err.message}` }));
    }
  }

  function card(job) {
    const thumb = h("div", { class: "thumb checkerboard loading" });
    const score = h("span", { class: "confidence", text: confidenceText(job) });
    const status = h("p", { class: "form-status", "aria-live": "polite" });
    const download = h("a", { class: "button secondary small", text: "Download", hidden: true });
    const model = select(MODELS, "fast");
    model.setAttribute("aria-label", `Model for replaying ${label(job)}`);
    const accept = h("button", { type: "button", class: "small", text: "Accept", "aria-label": `Accept ${label(job)}` });
    const replay = h("button", { type: "button", class: "secondary small", text: "Replay", "aria-label": `Replay ${label(job)}` });
    const item = h("li", { class: "thumb-card review-card", dataset: { jobId: job.id } }, thumb,
      h("div", { class: "thumb-body" },
        h("a", { href: `#/jobs/${job.id}`, class: "mono item-label", text: label(job) }), score,
        h("div", { class: "actions" }, accept, download), h("div", { class: "actions" }, model, replay), status));

    function remove(message) {
      item.remove();
      count -= 1;
      setNote();
      announce(message);
    }

    accept.addEventListener("click", async () => {
      accept.disabled = true;
      try {
        await api(`/v2/jobs/${job.id}/accept`, { method: "POST", signal: controller.signal });
        remove(`Accepted ${label(job)}.`);
      } catch (err) {
        accept.disabled = false;
        if (err.name !== "AbortError") status.replaceChildren(errorBox(err, "Could not accept"));
      }
    });

    replay.addEventListener("click", async () => {
      replay.disabled = accept.disabled = true;
      status.textContent = `Replaying with ${model.value}…`;
      try {
        let now = await api(`/v2/jobs/${job.id}/replay`, { method: "POST", json: { options: { model: model.value } }, signal: controller.signal });
        while (ACTIVE.has(now.status)) {
          await sleep(500, controller.signal);
          now = await api(`/v2/jobs/${job.id}`, { signal: controller.signal });
        }
        if (now.status !== "succeeded") {
          status.replaceChildren(errorBox({ message: `replay ${now.status}: ${now.error ? now.error.code : ""}` }));
        } else if (!now.needs_review) {
          remove(`${label(now)} replayed with ${model.value}: ${confidenceText(now)}, no longer flagged.`);
          return;
        } else {
          job = now;
          score.textContent = confidenceText(now);
          status.textContent = `Replayed with ${model.value}; still below the threshold.`;
          showCutout(now, thumb, download);
        }
      } catch (err) {
        if (err.name !== "AbortError") status.replaceChildren(errorBox(err, "Could not replay"));
      }
      replay.disabled = accept.disabled = false;
    });

    showCutout(job, thumb, download);
    return item;
  }

  async function load() {
    try {
      const page = await api("/v2/jobs?needs_review=true&status=succeeded&limit=200", { signal: controller.signal });
      // Newest job first, so the first job of each batch seen is its newest: batches come newest first.
      const byBatch = new Map();
      for (const job of page.data) {
        const key = job.batch_id || "";
        if (!byBatch.has(key)) byBatch.set(key, []);
        byBatch.get(key).push(job);
      }
      count = page.data.length;
      groups.replaceChildren(...[...byBatch].map(([batchId, jobs]) => h("section", { class: "review-group", "aria-label": batchId ? `Batch ${batchId}` : "Single jobs" },
        h("h2", {}, batchId ? h("a", { href: `#/batches/${batchId}`, class: "mono", text: `Batch ${batchId}` }) : "Single jobs",
          " ", h("span", { class: "muted" }, "newest ", timeEl(jobs[0].created_at))),
        h("ul", { class: "thumb-grid" }, ...jobs.map(card)))));
      setNote();
      errors.replaceChildren();
    } catch (err) {
      if (err.name !== "AbortError") errors.replaceChildren(errorBox(err, "Could not list the cutouts to review"));
    }
  }

  main.append(heading("Review"),
    h("p", { class: "muted", text: "Cutouts whose confidence (the estimated overlap with a careful hand-made mask) is below the review threshold. Accept the ones that are fine; replay the others with another model." }),
    errors, note, groups);
  load();
  return () => controller.abort();
}
