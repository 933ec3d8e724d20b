// The approvals inbox: every pending approval across the caller's sessions.

import { ApiError, get, query } from "../api.js";
import { approvalCard } from "../approval.js";
import { h, replace } from "../dom.js";

/** @param {HTMLElement} main */
export function render(main) {
  document.title = "Approvals · Keel console";
  const list = h("div", { class: "cards" });
  const summary = h("p", { class: "summary", role: "status", "aria-live": "polite" }, "Loading…");
  const pager = h("nav", { class: "pager", "aria-label": "Pages of approvals" });
  /** @type {Array<string | null>} */
  const back = [];
  let token = /** @type {string | null} */ (null);
  replace(
    main,
    h("h1", null, "Approvals"),
    h("p", null, "Tool calls waiting for a person, across your sessions. ", h("button", { type: "button", onclick: () => load(token) }, "Refresh")),
    summary,
    list,
    pager,
  );

  async function load(pageToken) {
    let page;
    try {
      page = await get(`/v1/approvals${query({ limit: 50, page_token: pageToken })}`);
    } catch (err) {
      summary.textContent =
        err instanceof ApiError && err.status === 404 && err.kind !== "page-not-found"
          ? "This API does not list approvals across sessions; open a session to decide its approvals."
          : String(err instanceof Error ? err.message : err);
      return;
    }
    token = pageToken;
    summary.textContent = page.approvals.length ? `${page.approvals.length} waiting.` : "Nothing waits for a decision.";
    replace(
      list,
      page.approvals.map((a) => approvalCard(a, { sessionId: a.session_id, agent: a.agent, user: a.user_id, showSession: true })),
    );
    replace(
      pager,
      back.length ? h("button", { type: "button", onclick: () => load(back.pop() ?? null) }, "Previous page") : null,
      page.next_page_token ? h("button", { type: "button", onclick: () => (back.push(token), load(page.next_page_token)) }, "Next page") : null,
    );
  }

  load(null);
}
