// Try: pick or drop an image, choose options, compare original and cutout, download the exact bytes.
import { api, ApiError, errorBox } from "../api.js";
import { announce, dl, extensionFor, field, formatBytes, formatMs, h, heading, select } from "../ui.js";

const NO_ALPHA = new Set(["jpg", "bmp"]);
const sleep = (ms) => new Promise((resolve) => { window.setTimeout(resolve, ms); });

export function render(main) {
  const urls = [];
  const remember = (url) => { urls.push(url); return url; };
  const controller = new AbortController();
  let file = null;

  const fileInput = h("input", { type: "file", id: "image-file", accept: "image/*", class: "file-input" });
  const fileName = h("span", { class: "file-name", text: "No image chosen" });
  const drop = h("div", { class: "dropzone", id: "dropzone" },
    h("label", { for: "image-file", class: "button", text: "Choose an image" }),
    fileInput,
    h("span", { class: "drop-hint", text: "or drop one here" }),
    fileName);

  const format = field("Format", select([["png", "PNG"], ["webp", "WebP"], ["jpg", "JPEG"], ["tiff", "TIFF"],
    ["bmp", "BMP"], ["gif", "GIF"]], "png"));
  const channels = field("Channels", select([["rgba", "Cutout (RGBA)"], ["alpha", "Alpha matte only"]], "rgba"));
  const size = field("Size", select([["full", "Full"], ["hd", "HD (4 MP)"], ["medium", "Medium (1.5 MP)"],
    ["preview", "Preview (0.25 MP)"], ["auto", "Auto"]], "full"));
  const crop = h("input", { type: "checkbox", id: "opt-crop", name: "crop" });
  const despill = h("input", { type: "checkbox", id: "opt-despill", name: "despill" });
  const bgOn = h("input", { type: "checkbox", id: "opt-bg-on" });
  const bgColor = h("input", { type: "color", id: "opt-bg-color", name: "bg_color", value: "#ffffff", disabled: true });
  bgOn.addEventListener("change", () => { bgColor.disabled = !bgOn.checked; });
  // Marketplace presets come from GET /v2/layouts; a chosen one fills canvas, placement, background and
  // shadow, and the shadow picker (like the background colour) overrides it.
  const layout = field("Marketplace layout", select([["", "None (keep the photo's frame)"]], ""),
    "A listing image: canvas, placement and background from the marketplace's rule.");
  const shadow = field("Shadow", select([["", "As the layout says"], ["none", "None"], ["drop", "Drop"],
    ["contact", "Contact (under the base)"], ["floating", "Floating"]], ""));
  const layoutRule = layout.wrap.querySelector(".hint");
  for (const [name, el] of [["format", format.input], ["channels", channels.input], ["size", size.input],
    ["layout", layout.input], ["shadow", shadow.input]]) {
    el.id = `opt-${name}`;
    el.name = name;
    const hint = el.parentElement.querySelector(".hint");
    if (hint) {
      hint.id = `${el.id}-hint`;
      el.setAttribute("aria-describedby", hint.id);
    }
    el.previousElementSibling.htmlFor = el.id;
  }

  const submit = h("button", { type: "submit", text: "Remove background", disabled: true });
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const results = h("section", { class: "results", "aria-label": "Result", hidden: true });

  const form = h("form", { class: "card try-form", novalidate: true },
    h("fieldset", {}, h("legend", { text: "Image" }), drop),
    h("fieldset", { class: "options" }, h("legend", { text: "Options" }),
      h("div", { class: "option-grid" }, format.wrap, channels.wrap, size.wrap,
        h("div", { class: "field check" }, crop, h("label", { for: "opt-crop", text: "Crop to the subject" })),
        h("div", { class: "field check" }, despill, h("label", { for: "opt-despill", text: "Despill (remove colour fringes)" })),
        h("div", { class: "field check" }, bgOn, h("label", { for: "opt-bg-on", text: "Fill the background" })),
        h("div", { class: "field" }, h("label", { for: "opt-bg-color", text: "Background colour" }), bgColor),
        layout.wrap, shadow.wrap)),
    h("div", { class: "actions" }, submit),
    status);

  const presets = new Map();
  api("/v2/layouts", { signal: controller.signal }).then((answer) => {
    for (const preset of answer.data) {
      presets.set(preset.name, preset);
      layout.input.append(h("option", { value: preset.name, text: preset.name }));
    }
  }).catch((err) => {
    if (err.name !== "AbortError") layoutRule.textContent = `The presets could not be loaded (${err.code || err.message}).`;
  });
  layout.input.addEventListener("change", () => {
    const preset = presets.get(layout.input.value);
    layoutRule.textContent = preset
      ? `${preset.options.canvas}, subject ${preset.options.scale} % of the frame, ${preset.options.bg_color} background` +
        ` — ${preset.rule} (${preset.source}).`
      : "A listing image: canvas, placement and background from the marketplace's rule.";
  });

  function choose(picked) {
    if (!picked) return;
    if (picked.type && !picked.type.startsWith("image/")) {
      status.replaceChildren(h("p", { class: "error-box", role: "alert",
        text: `${picked.name} is not an image (${picked.type}). Choose a PNG, JPEG or WebP file.` }));
      return;
    }
    file = picked;
    fileName.textContent = `${picked.name} (${formatBytes(picked.size)})`;
    submit.disabled = false;
    status.replaceChildren();
  }

  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("dragging"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("dragging"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    choose(event.dataTransfer && event.dataTransfer.files[0]);
  });

  function options() {
    const chosen = { format: format.input.value, channels: channels.input.value, size: size.input.value,
      crop: crop.checked ? "true" : "false", despill: despill.checked ? "true" : "false" };
    if (bgOn.checked) chosen.bg_color = bgColor.value;
    if (layout.input.value) chosen.layout = layout.input.value;
    if (shadow.input.value) chosen.shadow = shadow.input.value;
    return chosen;
  }

  async function finishJob(jobId) {
    for (;;) {
      const job = await api(`/v2/jobs/${jobId}`, { signal: controller.signal });
      if (["succeeded", "failed", "canceled"].includes(job.status)) return job;
      await sleep(500);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file) {
      status.replaceChildren(h("p", { class: "error-box", role: "alert", text: "Choose an image first." }));
      return;
    }
    const chosen = options();
    const body = new FormData();
    body.append("image_file", file, file.name);
    for (const [name, value] of Object.entries(chosen)) body.append(name, value);
    submit.disabled = true;
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    status.replaceChildren(h("p", { class: "busy", text: "Removing the background…" }));
    const started = performance.now();
    try {
      let response = await api("/v2", { method: "POST", body, raw: true, headers: { Accept: "image/*" },
        signal: controller.signal });
      let jobId = response.headers.get("X-Job-ID");
      if (response.status === 202) {
        status.replaceChildren(h("p", { class: "busy", text: "Still processing; waiting for the job…" }));
        const job = await finishJob(jobId);
        if (job.status !== "succeeded") {
          const e = job.error || {};
          throw new ApiError(e.status || 500, e.code || `job_${job.status}`, e.message || `The job was ${job.status}.`);
        }
        response = await api(`/v2/jobs/${jobId}/result`, { raw: true, signal: controller.signal });
      }
      const blob = await response.blob();
      const roundTrip = performance.now() - started;
      jobId ||= response.headers.get("X-Job-ID");
      const job = jobId ? await api(`/v2/jobs/${jobId}`, { signal: controller.signal }) : null;
      showResult({ blob, response, job, chosen, roundTrip });
      status.replaceChildren(h("p", { text: `Done in ${formatMs(roundTrip)}.` }));
      announce("Background removed. The result is shown below.");
    } catch (err) {
      if (err.name === "AbortError") return;
      status.replaceChildren(errorBox(err, "The cutout failed"));
      const option = err.details && err.details.option;
      const control = option ? form.querySelector(`[name="${CSS.escape(option)}"]`) : null;
      if (control) {
        control.setAttribute("aria-invalid", "true");
        control.focus();
      }
    } finally {
      submit.disabled = false;
    }
  });

  function showResult({ blob, response, job, chosen, roundTrip }) {
    const originalUrl = remember(URL.createObjectURL(file));
    const cutoutUrl = remember(URL.createObjectURL(blob));
    const contentType = response.headers.get("Content-Type") || blob.type;
    const flattened = chosen.bg_color || (chosen.layout && presets.get(chosen.layout)?.options.bg_color);
    const hasAlpha = chosen.channels === "alpha" || (!flattened && !NO_ALPHA.has(chosen.format));
    const width = response.headers.get("X-Width");
    const height = response.headers.get("X-Height");

    // Before/after: the cutout (on a checkerboard) over the original, clipped by a slider.
    const after = h("img", { src: cutoutUrl, alt: "Cutout", class: "after", id: "cutout-image" });
    const before = h("img", { src: originalUrl, alt: "Original", class: "before" });
    const slider = h("input", { type: "range", min: "0", max: "100", value: "50", id: "compare-slider",
      "aria-label": "Before/after position: left shows the original, right the cutout" });
    const afterLayer = h("div", { class: "after-layer checkerboard" }, after);
    const divider = h("div", { class: "divider", "aria-hidden": "true" });
    const setSplit = () => {
      afterLayer.style.clipPath = `inset(0 0 0 ${slider.value}%)`;
      divider.style.left = `${slider.value}%`;
    };
    slider.addEventListener("input", setSplit);
    setSplit();
    const compare = h("figure", { class: "compare" },
      h("div", { class: "compare-stage" }, before, afterLayer, divider),
      h("figcaption", {}, h("label", { for: "compare-slider", text: "Original ⟷ cutout" }), slider));

    const colorInput = h("input", { type: "color", id: "preview-color", value: "#2a9d8f" });
    const onColour = h("div", { class: "swatch-stage" }, h("img", { src: cutoutUrl, alt: "Cutout on the chosen colour" }));
    const paint = () => { onColour.style.backgroundColor = colorInput.value; };
    colorInput.addEventListener("input", paint);
    paint();

    const matte = h("canvas", { class: "matte", id: "alpha-matte", role: "img", "aria-label": "Alpha matte" });
    const matteBox = h("figure", { class: "panel" }, h("figcaption", { text: "Alpha matte" }), matte);
    if (hasAlpha) drawMatte(cutoutUrl, matte, chosen.channels === "alpha");
    else {
      matte.remove();
      matteBox.append(h("p", { class: "note",
        text: "This output has no alpha channel (a background colour or a format without transparency was chosen)." }));
    }

    const ext = extensionFor(contentType);
    const filename = `cutout-${job ? job.id : "result"}.${ext}`;
    const download = h("a", { class: "button", href: cutoutUrl, download: filename, id: "download-link",
      text: `Download ${ext.toUpperCase()} (${formatBytes(blob.size)})` });

    const timings = job && job.timings_ms ? job.timings_ms : {};
    const pipeline = timings.pipeline || {};
    const facts = dl([
      ["Output", `${width || "?"} × ${height || "?"} px, ${formatBytes(blob.size)}, ${contentType}`],
      ["Job", job ? h("a", { href: `#/jobs/${job.id}`, text: job.id }) : "–"],
      ["Round trip", formatMs(roundTrip)],
      ["Cache", job ? (job.cache_hit ? "hit (same image and options as before)" : "miss") : "–"],
      ["Queued", formatMs(timings.queued)],
      ["Processing", formatMs(timings.processing)],
      ...Object.entries(pipeline).map(([stage, ms]) => [`Pipeline: ${stage.replace(/_ms$/, "")}`, formatMs(ms)]),
    ]);

    results.replaceChildren(
      h("h2", { text: "Result" }),
      h("div", { class: "result-grid" },
        h("figure", { class: "panel" }, h("figcaption", { text: "Original" }), h("img", { src: originalUrl, alt: "Original image" })),
        h("figure", { class: "panel" }, h("figcaption", { text: "Cutout" }),
          h("div", { class: "checkerboard" }, h("img", { src: cutoutUrl, alt: "Cutout on a checkerboard" })))),
      compare,
      h("div", { class: "result-grid" },
        h("figure", { class: "panel" },
          h("figcaption", {}, h("label", { for: "preview-color", text: "Cutout on a colour " }), colorInput), onColour),
        matteBox),
      h("div", { class: "actions" }, download),
      h("h3", { text: "Details" }),
      facts);
    results.hidden = false;
  }

  main.append(heading("Try a cutout"), form, results);
  return () => {
    controller.abort();
    for (const url of urls) URL.revokeObjectURL(url);
  };
}

function drawMatte(url, canvas, alreadyMatte) {
  const image = new Image();
  image.onload = () => {
    const scale = Math.min(1, 1600 / Math.max(image.naturalWidth, image.naturalHeight));
    canvas.width = Math.max(1, Math.round(image.naturalWidth * scale));
    canvas.height = Math.max(1, Math.round(image.naturalHeight * scale));
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(image, 0, 0, canvas.width, canvas.height);
    if (alreadyMatte) return;
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
    const data = pixels.data;
    for (let i = 0; i < data.length; i += 4) {
      const alpha = data[i + 3];
      data[i] = alpha; data[i + 1] = alpha; data[i + 2] = alpha; data[i + 3] = 255;
    }
    context.putImageData(pixels, 0, 0);
  };
  image.src = url;
}
