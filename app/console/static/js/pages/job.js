// One job: status, options, stage timings, attempts, the result, replay, and webhook deliveries with resend.
import { api, errorBox, fetchBlob } from "../api.js";
import { announce, dl, extensionFor, formatMs, h, heading, poller, statusBadge, timeEl } from "../ui.js";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const STAGES = [["queued", "Queued"], ["fetch_ms", "Fetch input"], ["load_ms", "Load original"],
  ["pipeline_ms", "Pipeline"], ["store_ms", "Store result"], ["processing", "Processing (total)"], ["total", "Total"]];

function timingBars(rows) {
  const values = rows.filter(([, ms]) => typeof ms === "number");
  if (!values.length) return h("p", { class: "muted", text: "No timings recorded yet." });
  const max = Math.max(...values.map(([, ms]) => ms), 1);
  return h("ul", { class: "bars", "aria-label": "Stage timings" }, ...values.map(([label, ms]) => {
    const bar = h("span", { class: "bar" });
    bar.style.width = `${Math.max(1, (ms / max) * 100)}%`;
    return h("li", {}, h("span", { class: "bar-label", text: label }), h("span", { class: "bar-track" }, bar),
      h("span", { class: "bar-value", text: formatMs(ms) }));
  }));
}

function describeOptions(options) {
  return Object.entries(options || {})
    .filter(([name]) => name !== "crop_margin" || options.crop)
    .map(([name, value]) => `${name}=${value === null ? "default" : typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(", ");
}

export function render(main, { params }) {
  const [jobId] = params;
  const controller = new AbortController();
  const urls = [];
  let job = null;
  let shownResult = null;

  const errors = h("div");
  const summary = h("section", { class: "card", "aria-label": "Summary" });
  const timings = h("section", { class: "card", "aria-labelledby": "timings-h" });
  const result = h("section", { class: "card", "aria-labelledby": "result-h" });
  const hooks = h("section", { class: "card", "aria-labelledby": "hooks-h" });
  const actionStatus = h("div", { class: "form-status", "aria-live": "polite" });
  const replay = h("button", { type: "button", id: "replay-job", text: "Replay", hidden: true });

  function drawSummary() {
    summary.replaceChildren(dl([
      ["Status", statusBadge(job.status)],
      ["Error", job.error ? h("span", {}, h("code", { class: "error-code", text: job.error.code }), ` ${job.error.message}`) : undefined],
      ["Created", timeEl(job.created_at)], ["Started", timeEl(job.started_at)], ["Finished", timeEl(job.finished_at)],
      ["Attempts", String(job.attempts)], ["Replays", String(job.replays)], ["Cache hit", job.cache_hit ? "yes" : "no"],
      ["Source", job.source], ["Queue", `${job.queue} (priority ${job.priority})`],
      ["External id", job.external_id || "–"],
      ["Batch", job.batch_id ? h("a", { href: `#/batches/${job.batch_id}`, class: "mono", text: job.batch_id }) : "–"],
      ["Input", job.input ? h("code", { text: job.input.image_url || job.input.s3_key }) : job.asset_id || "–"],
      ["Options", h("code", { class: "wrap", text: describeOptions(job.options) })],
      ["Metadata", job.metadata ? h("code", { class: "wrap", text: JSON.stringify(job.metadata) }) : "–"],
      ["Request id", job.request_id ? h("code", { text: job.request_id }) : "–"],
    ]));
    replay.hidden = !TERMINAL.has(job.status);
    const t = job.timings_ms || {};
    const pipeline = t.pipeline || {};
    timings.replaceChildren(h("h2", { id: "timings-h", text: "Stage timings" }),
      timingBars(STAGES.map(([key, label]) => [label, t[key]])),
      Object.keys(pipeline).length ? h("h3", { text: "Pipeline breakdown" }) : null,
      Object.keys(pipeline).length ? timingBars(Object.entries(pipeline).map(([k, v]) => [k.replace(/_ms$/, ""), v])) : null);
  }

  async function drawResult() {
    const key = `${job.id}:${job.finished_at}`;
    if (job.status !== "succeeded") {
      shownResult = null;
      result.replaceChildren(h("h2", { id: "result-h", text: "Result" }),
        h("p", { class: "muted", text: job.status === "failed" ? "No result: the job failed." : `No result yet (${job.status}).` }));
      return;
    }
    if (shownResult === key) return;
    shownResult = key;
    try {
      const blob = await fetchBlob(`/v2/jobs/${job.id}/result`, controller.signal);
      const url = URL.createObjectURL(blob);
      urls.push(url);
      const meta = job.result || {};
      result.replaceChildren(h("h2", { id: "result-h", text: "Result" }),
        h("div", { class: "checkerboard result-preview" }, h("img", { src: url, alt: `Result of ${job.id}` })),
        h("p", { class: "muted", text: `${meta.width} × ${meta.height} px, ${blob.size} bytes, ${blob.type}` }),
        h("a", { class: "button", href: url, download: `${job.external_id || job.id}.${extensionFor(blob.type)}`, text: "Download" }));
    } catch (err) {
      if (err.name !== "AbortError") result.replaceChildren(h("h2", { id: "result-h", text: "Result" }), errorBox(err, "Could not load the result"));
    }
  }

  async function drawHooks() {
    try {
      const list = await api(`/v2/jobs/${jobId}/webhooks`, { signal: controller.signal });
      const items = list.data.map((delivery) => h("li", { class: "delivery", dataset: { deliveryId: delivery.id } },
        h("div", { class: "batch-head" }, h("code", { text: delivery.id }), h("span", { text: delivery.event }),
          statusBadge(delivery.status),
          h("button", { type: "button", class: "secondary small", text: "Resend", "aria-label": `Resend ${delivery.event} ${delivery.id}`,
            onclick: (event) => resend(delivery, event.currentTarget) })),
        h("p", { class: "muted" }, "to ", h("code", { text: delivery.url })),
        delivery.attempts.length ? h("div", { class: "table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, ...["#", "Sent", "HTTP", "Duration", "Error", "Next attempt"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, ...delivery.attempts.map((a) => h("tr", {},
            h("td", { text: String(a.number) }), h("td", {}, timeEl(a.started_at)),
            h("td", { text: a.status_code ? String(a.status_code) : "–" }), h("td", { text: formatMs(a.duration_ms) }),
            h("td", { text: a.error || "–" }), h("td", {}, timeEl(a.next_attempt_at)))))))
          : h("p", { class: "muted", text: "No attempt yet." })));
      hooks.replaceChildren(h("h2", { id: "hooks-h", text: "Webhook deliveries" }),
        items.length ? h("ul", { class: "deliveries" }, ...items)
          : h("p", { class: "muted", text: job && job.webhook_url ? "No message yet." : "This job has no webhook_url." }));
    } catch (err) {
      if (err.name !== "AbortError") hooks.replaceChildren(h("h2", { id: "hooks-h", text: "Webhook deliveries" }), errorBox(err));
    }
  }

  async function resend(delivery, button) {
    button.disabled = true;
    try {
      await api(`/v2/jobs/${jobId}/webhooks/${delivery.id}/resend`, { method: "POST" });
      actionStatus.replaceChildren(h("p", { text: `Resending ${delivery.id}.` }));
      announce("Webhook queued for resend.");
      await drawHooks();
    } catch (err) {
      actionStatus.replaceChildren(errorBox(err, "Resend failed"));
      button.disabled = false;
    }
  }

  async function refresh() {
    try {
      job = await api(`/v2/jobs/${jobId}`, { signal: controller.signal });
      errors.replaceChildren();
      drawSummary();
      await Promise.all([drawResult(), drawHooks()]);
    } catch (err) {
      if (err.name !== "AbortError") errors.replaceChildren(errorBox(err, "Could not load the job"));
    }
  }

  const live = poller(async () => { if (job && !TERMINAL.has(job.status)) await refresh(); }, 1000);

  replay.addEventListener("click", async () => {
    replay.disabled = true;
    try {
      job = await api(`/v2/jobs/${jobId}/replay`, { method: "POST" });
      actionStatus.replaceChildren(h("p", { text: job.cache_hit ? "Replayed from the result cache." : "Replay queued." }));
      await refresh();
    } catch (err) {
      actionStatus.replaceChildren(errorBox(err, "Replay failed"));
    } finally {
      replay.disabled = false;
    }
  });

  main.append(h("p", { class: "crumbs" }, h("a", { href: "#/jobs", text: "← Jobs" })),
    heading(`Job ${jobId}`), errors, summary, h("div", { class: "actions" }, replay), actionStatus, timings, result, hooks);
  refresh().then(() => live.start());
  return () => {
    live.stop();
    controller.abort();
    for (const url of urls) URL.revokeObjectURL(url);
  };
}
