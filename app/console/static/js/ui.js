// Small DOM helpers: elements are built with textContent (never innerHTML), so API data cannot inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let fieldCounter = 0;
export function uid(prefix = "f") {
  fieldCounter += 1;
  return `${prefix}-${fieldCounter}`;
}

/** A labelled control: returns {wrap, input}. */
export function field(label, input, hint) {
  input.id ||= uid("field");
  const hintEl = hint ? h("small", { class: "hint", id: `${input.id}-hint`, text: hint }) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  const wrap = h("div", { class: "field" }, h("label", { for: input.id, text: label }), input, hintEl);
  return { wrap, input };
}

export function select(options, value) {
  const el = h("select");
  for (const option of options) {
    const [val, label] = Array.isArray(option) ? option : [option, option];
    el.append(h("option", { value: val, text: label, selected: val === value }));
  }
  return el;
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, text: status });
}

export function formatBytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(2)} MB`;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms * 10) / 10} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.round(ms / 60000)} min`;
}

export function formatTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso.endsWith("Z") || /[+-]\d\d:\d\d$/.test(iso) ? iso : `${iso}Z`);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function timeEl(iso) {
  return iso ? h("time", { datetime: iso, text: formatTime(iso) }) : "–";
}

export function announce(message) {
  const el = document.getElementById("announcer");
  if (!el) return;
  el.textContent = "";
  window.setTimeout(() => { el.textContent = message; }, 30);
}

/** A definition list from [label, value] pairs; values may be nodes. */
export function dl(pairs, className = "facts") {
  const list = h("dl", { class: className });
  for (const [label, value] of pairs) {
    if (value === undefined) continue;
    list.append(h("div", {}, h("dt", { text: label }), h("dd", {}, value === null ? "–" : value)));
  }
  return list;
}

export function heading(text, level = 1) {
  return h(`h${level}`, { tabindex: level === 1 ? "-1" : undefined, text });
}

/** Calls fn every `ms` until stopped; waits for each call to finish before scheduling the next. */
export function poller(fn, ms) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
    } finally {
      if (!stopped) timer = window.setTimeout(tick, ms);
    }
  };
  return {
    start(delay = ms) { stopped = false; window.clearTimeout(timer); timer = window.setTimeout(tick, delay); },
    stop() { stopped = true; window.clearTimeout(timer); },
  };
}

export function extensionFor(contentType) {
  const sub = (contentType || "image/png").split(";")[0].split("/")[1] || "png";
  return { jpeg: "jpg", "svg+xml": "svg" }[sub] || sub;
}
