// Shell and hash router: #/try, #/batches, #/batches/<id>, #/jobs, #/jobs/<id>, #/review, #/usage.
import { api, auth } from "./api.js";
import { clear } from "./ui.js";
import * as signin from "./pages/signin.js";
import * as tryPage from "./pages/try.js";
import * as batches from "./pages/batches.js";
import * as batch from "./pages/batch.js";
import * as jobs from "./pages/jobs.js";
import * as job from "./pages/job.js";
import * as usage from "./pages/usage.js";
import * as review from "./pages/review.js";

const ROUTES = [
  [/^\/?$/, tryPage, "try"],
  [/^\/try$/, tryPage, "try"],
  [/^\/batches$/, batches, "batches"],
  [/^\/batches\/([\w-]+)$/, batch, "batches"],
  [/^\/jobs$/, jobs, "jobs"],
  [/^\/jobs\/([\w-]+)$/, job, "jobs"],
  [/^\/review$/, review, "review"],
  [/^\/usage$/, usage, "usage"],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const accountBox = document.getElementById("account");
let cleanup = null;
let account = null;
let notice = null;

function currentPath() {
  const hash = window.location.hash;
  return hash.startsWith("#/") ? hash.slice(1).split("?")[0] : "/";
}

function setShell(signedIn) {
  nav.hidden = !signedIn;
  accountBox.hidden = !signedIn;
  document.getElementById("account-name").textContent = account ? `${account.account.name} · ${account.api_key.mode}` : "";
}

async function loadAccount() {
  if (!auth.key) return null;
  if (!account) account = await api("/v2/account");
  return account;
}

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const path = currentPath();
  clear(main);
  let signedIn = false;
  try {
    signedIn = Boolean(await loadAccount());
  } catch (err) {
    signedIn = false;
    notice = err;
  }
  setShell(signedIn);
  if (!signedIn) {
    cleanup = signin.render(main, { notice, onSignedIn: (info) => { account = info; notice = null; route(); } });
    notice = null;
    document.title = "Sign in · Clearcut console";
    return;
  }
  const found = ROUTES.map(([pattern, page, section]) => [path.match(pattern), page, section]).find(([m]) => m);
  const [match, page, section] = found || [null, null, null];
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!page) {
    main.append(Object.assign(document.createElement("h1"), { textContent: "Page not found", tabIndex: -1 }));
    return;
  }
  cleanup = page.render(main, { params: match.slice(1), account }) || null;
  const title = main.querySelector("h1");
  document.title = `${title ? title.textContent : "Console"} · Clearcut console`;
  if (title && document.activeElement !== main && !main.contains(document.activeElement)) title.focus({ preventScroll: true });
}

document.getElementById("sign-out").addEventListener("click", () => {
  auth.clear();
  account = null;
  window.location.hash = "#/try";
  route();
});

window.addEventListener("clearcut:unauthorized", (event) => {
  auth.clear();
  account = null;
  notice = event.detail;
  route();
});

document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  (main.querySelector("h1") || main).focus();
});

window.addEventListener("hashchange", route);
route();
