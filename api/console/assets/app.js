// The console's entry point: path routing under /console, the page shell, the approvals badge.

import { get } from "./api.js";
import { h, replace } from "./dom.js";
import { BASE, navigate } from "./nav.js";
import { credentials, forget } from "./store.js";
import * as agents from "./pages/agents.js";
import * as inbox from "./pages/inbox.js";
import * as session from "./pages/session.js";
import * as sessions from "./pages/sessions.js";
import * as triggers from "./pages/triggers.js";

const BADGE_EVERY_MS = 15_000;

/** @type {Array<[RegExp, string, {render: Function}]>} */
const ROUTES = [
  [/^\/?$/, "sessions", sessions],
  [/^\/sessions\/?$/, "sessions", sessions],
  [/^\/sessions\/([^/]+)\/?$/, "sessions", session],
  [/^\/approvals\/?$/, "approvals", inbox],
  [/^\/agents\/?$/, "agents", agents],
  [/^\/triggers\/?$/, "triggers", triggers],
];

/** @type {null | (() => void)} */
let cleanup = null;

function route() {
  const main = /** @type {HTMLElement} */ (document.getElementById("main"));
  if (cleanup) cleanup();
  cleanup = null;
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "/";
  for (const [pattern, nav, page] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    markNav(nav);
    const params = match.slice(1).map(decodeURIComponent);
    const done = page.render(main, params, new URLSearchParams(location.search));
    cleanup = typeof done === "function" ? done : null;
    return;
  }
  markNav("");
  document.title = "Not found · Keel console";
  replace(
    main,
    h("h1", { tabindex: "-1" }, "Not found"),
    h("p", null, "No console page here. ", h("a", { href: `${BASE}/sessions` }, "See the sessions.")),
  );
}

function markNav(current) {
  for (const link of document.querySelectorAll("nav a[data-nav]")) {
    if (link.getAttribute("data-nav") === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function navigated() {
  route();
  focusHeading();
}

function focusHeading() {
  const heading = document.querySelector("main h1");
  if (heading instanceof HTMLElement) {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }
}

function onClick(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target instanceof Element ? event.target.closest("a[href]") : null;
  if (!link || link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(BASE)) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}

function showIdentity() {
  const { key, user } = credentials();
  const who = /** @type {HTMLElement} */ (document.getElementById("identity"));
  const parts = [];
  if (user) parts.push(`user ${user}`);
  if (key) parts.push("key set");
  who.textContent = parts.join(" · ");
  /** @type {HTMLElement} */ (document.getElementById("forget-key")).hidden = !key;
}

/** The number of pending approvals across the caller's sessions, on the nav link. */
export async function refreshBadge() {
  const badge = document.getElementById("inbox-count");
  if (!badge) return;
  try {
    const page = await get("/v1/approvals?limit=200", { quiet: true });
    const count = page.approvals.length;
    badge.textContent = page.next_page_token ? `${count}+` : String(count);
    badge.setAttribute("aria-label", `${badge.textContent} pending`);
    badge.hidden = count === 0;
  } catch {
    badge.hidden = true; // no key yet, or an API without the inbox
  }
}

function start() {
  document.addEventListener("click", onClick);
  window.addEventListener("popstate", route);
  window.addEventListener("keel:navigate", navigated);
  window.addEventListener("keel:approvals", () => refreshBadge());
  window.addEventListener("keel:identity", () => {
    showIdentity();
    refreshBadge();
  });
  document.getElementById("forget-key")?.addEventListener("click", () => {
    forget();
    showIdentity();
    route();
  });
  showIdentity();
  route();
  refreshBadge();
  window.setInterval(refreshBadge, BADGE_EVERY_MS);
}

start();
