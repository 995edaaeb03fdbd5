// Usage: charged images per day (an SVG bar chart, with the same numbers as a table) and per option.
import { api, errorBox } from "../api.js";
import { field, h, heading, select } from "../ui.js";

const SVG = "http://www.w3.org/2000/svg";
const OPTION_LABELS = { format: "Format", size: "Size", channels: "Channels", crop: "Crop", bg_color: "Background colour",
  despill: "Despill", model: "Model", source: "Route" };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

function dayChart(days) {
  const width = 720;
  const height = 240;
  const pad = { top: 12, right: 8, bottom: 28, left: 40 };
  const max = Math.max(1, ...days.map((d) => d.images));
  const step = (width - pad.left - pad.right) / days.length;
  const y = (v) => pad.top + (height - pad.top - pad.bottom) * (1 - v / max);
  const total = days.reduce((sum, d) => sum + d.images, 0);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", id: "usage-chart",
    "aria-label": `Images per day: ${total} in ${days.length} days, at most ${max} on one day` });
  for (const tick of [0, max / 2, max]) {
    chart.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(tick), y2: y(tick), class: "grid-line" }),
      svg("text", { x: pad.left - 6, y: y(tick) + 4, class: "axis-label", "text-anchor": "end" }, String(Math.round(tick * 10) / 10)));
  }
  const every = Math.ceil(days.length / 8);
  days.forEach((day, i) => {
    const x = pad.left + i * step;
    const bar = svg("rect", { x: x + step * 0.15, y: y(day.images), width: Math.max(1, step * 0.7),
      height: Math.max(0, height - pad.bottom - y(day.images)), class: "chart-bar" });
    bar.append(svg("title", {}, `${day.date}: ${day.images} image(s)`));
    chart.append(bar);
    if (i % every === 0 || i === days.length - 1) {
      chart.append(svg("text", { x: x + step / 2, y: height - 8, class: "axis-label", "text-anchor": "middle" }, day.date.slice(5)));
    }
  });
  return chart;
}

function optionBars(name, rows) {
  const max = Math.max(1, ...rows.map((r) => r.images));
  return h("section", { class: "card option-usage", "aria-label": `Images by ${OPTION_LABELS[name] || name}` },
    h("h3", { text: OPTION_LABELS[name] || name }),
    rows.length ? h("ul", { class: "bars" }, ...rows.map((row) => {
      const bar = h("span", { class: "bar" });
      bar.style.width = `${Math.max(1, (row.images / max) * 100)}%`;
      return h("li", {}, h("span", { class: "bar-label", text: row.value }), h("span", { class: "bar-track" }, bar),
        h("span", { class: "bar-value", text: String(row.images) }));
    })) : h("p", { class: "muted", text: "No images." }));
}

export function render(main) {
  const controller = new AbortController();
  const range = field("Period", select([["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"], ["366", "Last year"]], "30"));
  range.input.id = "usage-days";
  const content = h("div", { "aria-live": "polite" });

  async function load() {
    const offset = -new Date().getTimezoneOffset();
    try {
      const usage = await api(`/v2/usage?days=${range.input.value}&tz_offset_min=${offset}`, { signal: controller.signal });
      const table = h("table", {},
        h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Day" }), h("th", { scope: "col", text: "Images" }))),
        h("tbody", {}, ...usage.per_day.filter((d) => d.images).map((d) => h("tr", {}, h("td", { text: d.date }), h("td", { text: String(d.images) })))));
      content.replaceChildren(
        h("p", { class: "total", id: "usage-total" }, h("strong", { text: String(usage.images) }),
          ` image(s) from ${usage.from} to ${usage.to}`),
        h("section", { class: "card" }, h("h2", { text: "Images per day" }), dayChart(usage.per_day),
          h("details", {}, h("summary", { text: "Show as a table" }), h("div", { class: "table-wrap" }, table))),
        h("h2", { text: "Images per option" }),
        h("div", { class: "option-usage-grid" }, ...Object.keys(OPTION_LABELS).filter((name) => usage.per_option[name])
          .map((name) => optionBars(name, usage.per_option[name]))));
    } catch (err) {
      if (err.name !== "AbortError") content.replaceChildren(errorBox(err, "Could not load usage"));
    }
  }
  range.input.addEventListener("change", load);
  main.append(heading("Usage"), h("div", { class: "card inline-form" }, range.wrap), content);
  load();
  return () => controller.abort();
}
