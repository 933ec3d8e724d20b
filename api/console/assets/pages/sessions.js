// The sessions list: filters, pages, pending approvals per session, and starting a session.

import { ApiError, get, post, query } from "../api.js";
import { h, replace, timeEl } from "../dom.js";
import { BASE, navigate, sessionPath } from "../nav.js";
import { credentials } from "../store.js";

const PAGE_SIZE = 20;
/** `?limit=` of the console's address overrides it (1-200, as the API takes). */

/** @param {HTMLElement} main @param {string[]} _params @param {URLSearchParams} search */
export function render(main, _params, search) {
  document.title = "Sessions · Keel console";
  const filters = { agent: search.get("agent") || "", user_id: search.get("user_id") || "", status: search.get("status") || "" };
  const asked = Number(search.get("limit"));
  const limit = Number.isInteger(asked) && asked >= 1 && asked <= 200 ? asked : PAGE_SIZE;
  const agentFilter = h("select", { id: "f-agent", name: "agent" }, h("option", { value: "" }, "any agent"));
  const agentNew = h("select", { id: "new-agent", name: "agent" });
  const userFilter = h("input", { id: "f-user", name: "user_id", value: filters.user_id, autocomplete: "off", spellcheck: "false" });
  const statusFilter = h(
    "select",
    { id: "f-status", name: "status" },
    h("option", { value: "" }, "any status"),
    h("option", { value: "active" }, "active"),
    h("option", { value: "closed" }, "closed"),
  );
  statusFilter.value = filters.status;
  const rows = h("tbody");
  const summary = h("p", { class: "summary", role: "status", "aria-live": "polite" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages of sessions" });
  const problem = h("p", { class: "problem", role: "alert", hidden: true });
  const actingAs = h("p", { class: "hint", hidden: true });
  /** @type {Array<string | null>} tokens of the pages before this one */
  const back = [];
  let token = /** @type {string | null} */ (null);

  replace(
    main,
    h("h1", null, "Sessions"),
    h(
      "form",
      { class: "new-session", "aria-label": "Start a session", onsubmit: (e) => (e.preventDefault(), start()) },
      h("label", { for: "new-agent" }, "New session with"),
      agentNew,
      h("button", { type: "submit", class: "primary" }, "Start a session"),
    ),
    h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter sessions", onsubmit: (e) => (e.preventDefault(), apply()) },
      h("div", null, h("label", { for: "f-agent" }, "Agent"), agentFilter),
      h("div", null, h("label", { for: "f-user" }, "User"), userFilter),
      h("div", null, h("label", { for: "f-status" }, "Status"), statusFilter),
      h("button", { type: "submit" }, "Filter"),
      h("button", { type: "button", onclick: () => load(token) }, "Refresh"),
    ),
    actingAs,
    problem,
    summary,
    h(
      "table",
      { class: "sessions" },
      h("caption", { class: "sr-only" }, "Sessions, newest first"),
      h(
        "thead",
        null,
        h("tr", null, ["Session", "Agent", "User", "Status", "Last activity", "Approvals"].map((t) => h("th", { scope: "col" }, t))),
      ),
      rows,
    ),
    pager,
  );

  get("/v1/agents").then(({ agents }) => {
    for (const agent of agents) {
      agentFilter.append(h("option", { value: agent.name }, agent.name));
      agentNew.append(h("option", { value: agent.name }, agent.name));
    }
    agentFilter.value = filters.agent;
  }, showProblem);

  function apply() {
    filters.agent = agentFilter.value;
    filters.user_id = userFilter.value.trim();
    filters.status = statusFilter.value;
    const keep = limit === PAGE_SIZE ? {} : { limit };
    history.replaceState(null, "", `${BASE}/sessions${query({ ...filters, ...keep })}`);
    back.length = 0;
    load(null);
  }

  async function start() {
    try {
      const session = await post("/v1/sessions", agentNew.value ? { agent: agentNew.value } : {});
      navigate(sessionPath(session.id));
    } catch (err) {
      showProblem(err);
    }
  }

  function showProblem(err) {
    problem.hidden = false;
    problem.textContent = err instanceof Error ? err.message : String(err);
  }

  async function load(pageToken) {
    problem.hidden = true;
    let page;
    try {
      page = await get(`/v1/sessions${query({ ...filters, limit, page_token: pageToken })}`);
    } catch (err) {
      if (err instanceof ApiError && err.kind === "page-not-found") return load(null);
      showProblem(err);
      return;
    }
    token = pageToken;
    const { user } = credentials(); // known now: a client key's user is asked for on its first call
    actingAs.hidden = !user;
    actingAs.textContent = user ? `You act as user ${user}: only that user's sessions are listed.` : "";
    replace(rows, page.sessions.map(row));
    const n = page.sessions.length;
    summary.textContent = n ? `${n} session${n === 1 ? "" : "s"} on this page.` : "No sessions match.";
    replace(
      pager,
      back.length ? h("button", { type: "button", onclick: () => load(back.pop() ?? null) }, "Previous page") : null,
      page.next_page_token
        ? h("button", { type: "button", onclick: () => (back.push(token), load(page.next_page_token)) }, "Next page")
        : null,
    );
  }

  load(null);
}

function row(s) {
  const count = s.pending_approval_count;
  return h(
    "tr",
    { "data-session-id": s.id, class: count ? "has-pending" : null },
    h("td", { "data-label": "Session" }, h("a", { href: sessionPath(s.id) }, h("code", null, s.id.slice(0, 8)), h("span", { class: "sr-only" }, ` session ${s.id}`))),
    h("td", { "data-label": "Agent" }, s.agent),
    h("td", { "data-label": "User" }, s.user_id),
    h("td", { "data-label": "Status" }, h("span", { class: `pill ${s.status}` }, s.status)),
    h("td", { "data-label": "Last activity" }, timeEl(s.last_activity_at || s.created_at)),
    h(
      "td",
      { "data-label": "Approvals" },
      typeof count === "number" && count > 0 ? h("span", { class: "badge" }, String(count), h("span", { class: "sr-only" }, " pending")) : typeof count === "number" ? "0" : "",
    ),
  );
}
