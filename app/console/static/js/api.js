// The console's only way to the API: same origin, key in the x-api-key header (never in a URL).
import { h } from "./ui.js";

const STORAGE = "clearcut.console.apiKey";

export const auth = {
  get key() { return window.sessionStorage.getItem(STORAGE); },
  set(key) { window.sessionStorage.setItem(STORAGE, key); },
  clear() { window.sessionStorage.removeItem(STORAGE); },
};

// What to do about an error code, in words; the API's own message is shown next to it.
const HINTS = {
  missing_api_key: "Sign in with an API key.",
  invalid_api_key: "That API key is not valid. Check it for typos, or create one with: clearcut keys create --account NAME.",
  revoked_api_key: "That API key has been revoked. Create a new one with: clearcut keys create --account NAME.",
  inactive_account: "This account is inactive.",
  rate_limited: "Too many requests with this key. Wait a moment and try again.",
  image_too_large: "The image is too large. Downscale or compress it and try again.",
  invalid_image: "The file is not an image Clearcut can read (PNG, JPEG, WebP, …).",
  unsupported_media_type: "That file type is not supported. Use a PNG, JPEG or WebP image.",
  missing_image: "Choose an image first.",
  job_not_found: "No such job for this account.",
  batch_not_found: "No such batch for this account.",
  job_not_finished: "The job has not finished yet.",
  original_expired: "The original image was deleted by retention; it cannot be replayed.",
  image_url_unreachable: "The image URL could not be fetched.",
  url_not_allowed: "That URL points to a private or blocked address.",
  invalid_batch: "The batch request is not valid.",
  invalid_batch_item: "One of the batch items is not valid.",
  network_error: "The Clearcut API could not be reached. Check that the server is running.",
  internal_error: "The server failed. Retry; if it persists, report the request id.",
};

export class ApiError extends Error {
  constructor(status, code, message, requestId = null, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.details = details || {};
  }

  get hint() {
    return HINTS[this.code] || (this.code.startsWith("invalid_") ? "Check the highlighted option." : null);
  }
}

async function toError(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: a proxy page */ }
  const error = body && body.error;
  if (error && error.code) {
    return new ApiError(response.status, error.code, error.message, error.request_id, error.details);
  }
  return new ApiError(response.status, `http_${response.status}`, `The server answered HTTP ${response.status}.`,
    response.headers.get("X-Request-ID"));
}

/** fetch() against the API. Returns parsed JSON, or the Response itself with {raw: true}. */
export async function api(path, { method = "GET", json, body, headers = {}, raw = false, signal, key } = {}) {
  const sent = new Headers(headers);
  const apiKey = key ?? auth.key;
  if (apiKey) sent.set("x-api-key", apiKey);
  let payload = body;
  if (json !== undefined) {
    sent.set("Content-Type", "application/json");
    payload = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers: sent, body: payload, signal, cache: "no-store",
      credentials: "omit", redirect: "error" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", `Request failed: ${err.message}`);
  }
  if (!response.ok) {
    const error = await toError(response);
    if (response.status === 401 && !key) window.dispatchEvent(new CustomEvent("clearcut:unauthorized", { detail: error }));
    throw error;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

/** A visible, announced error box: what to do, the API's message, its code, status and request id. */
export function errorBox(error, context) {
  if (!(error instanceof ApiError)) {
    error = new ApiError(0, "client_error", error && error.message ? error.message : String(error));
  }
  const title = context ? `${context}: ${error.hint || error.message}` : error.hint || error.message;
  return h("div", { class: "error-box", role: "alert", dataset: { code: error.code } },
    h("p", { class: "error-title", text: title }),
    error.hint ? h("p", { class: "error-message", text: error.message }) : null,
    h("p", { class: "error-meta" },
      h("code", { text: error.code }),
      error.status ? ` · HTTP ${error.status}` : "",
      error.requestId ? " · request " : "",
      error.requestId ? h("code", { text: error.requestId }) : null));
}

// Result images need the key header, so they are fetched and shown as blob: URLs, a few at a time.
const queue = [];
let running = 0;
const LIMIT = 4;

function pump() {
  while (running < LIMIT && queue.length) {
    const { path, signal, resolve, reject } = queue.shift();
    if (signal && signal.aborted) { reject(new DOMException("aborted", "AbortError")); continue; }
    running += 1;
    api(path, { raw: true, signal })
      .then((response) => response.blob())
      .then(resolve, reject)
      .finally(() => { running -= 1; pump(); });
  }
}

export function fetchBlob(path, signal) {
  return new Promise((resolve, reject) => { queue.push({ path, signal, resolve, reject }); pump(); });
}
