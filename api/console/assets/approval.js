// One approval as a card: approve, reject with feedback, or revise the arguments in a JSON
// editor beside the tool's schema; the API's 422 is shown by the editor, a 409 as who decided.

import { ApiError, get, post, seg } from "./api.js";
import { ask } from "./ask.js";
import { h, jsonBlock, replace, timeEl } from "./dom.js";
import { sessionPath } from "./nav.js";
import { reviewer, setReviewer } from "./store.js";

const DONE = { approve: "approved", reject: "rejected", revise: "revised" };

/** @type {Map<string, Promise<Record<string, any>>>} agent → its tools by name */
const tools = new Map();

/** The tools of an agent, by name ({} when the API does not list them). */
function toolsOf(agent) {
  if (!tools.has(agent)) {
    tools.set(
      agent,
      get(`/v1/agents/${seg(agent)}/tools`, { quiet: true }).then(
        (body) => Object.fromEntries((body.tools || []).map((t) => [t.name, t])),
        () => ({}),
      ),
    );
  }
  return /** @type {Promise<Record<string, any>>} */ (tools.get(agent));
}

/** The reviewer's name, asked once and kept in localStorage. */
async function reviewerName() {
  const known = reviewer();
  if (known) return known;
  const name = await ask({
    id: "reviewer",
    title: "Your name",
    label: "Reviewer name",
    hint: "Recorded with each decision you make; kept in this browser.",
    maxlength: 128,
  });
  if (name) setReviewer(name);
  return name;
}

/** The sentence for a 409: who decided first, and how ("Already approved by Ann."). */
export function alreadyDecided(problem) {
  const status = statusWord(problem);
  const others = { timeout: "the timeout", signal: "a signal" };
  const by = problem.decided_by;
  const who = problem.reviewer || others[by] || (by && by !== "update" ? by : "");
  return `Already ${status}${who ? ` by ${who}` : ""}.`;
}

function statusWord(problem) {
  if (typeof problem.approval_status === "string") return problem.approval_status;
  if (typeof problem.status === "string") return problem.status;
  if (problem.decision && DONE[problem.decision]) return DONE[problem.decision];
  return "decided";
}

let counter = 0;

/**
 * A card for `approval` of `sessionId`.
 * @param {Record<string, any>} approval {id, tool, arguments, requested_at, expires_at, …}
 * @param {{sessionId: string, agent?: string, user?: string, showSession?: boolean,
 *          onDecided?: (approval: Record<string, any>) => void}} options
 */
export function approvalCard(approval, { sessionId, agent, user, showSession = false, onDecided }) {
  const n = ++counter;
  const ids = { title: `ap-${n}-t`, args: `ap-${n}-a`, feedback: `ap-${n}-f`, error: `ap-${n}-e` };
  const status = h("div", { class: "outcome", role: "status", "aria-live": "polite" });
  const problemBox = h("div", { class: "problem", id: ids.error, role: "alert", hidden: true });
  const feedback = h("textarea", { id: ids.feedback, rows: "2", maxlength: "10000" });
  const editor = h("textarea", {
    id: ids.args,
    class: "code",
    rows: "6",
    spellcheck: "false",
    "aria-describedby": ids.error,
    value: JSON.stringify(approval.arguments ?? {}, null, 2),
  });
  const schemaSlot = h("div", { class: "schema" });
  const reviseArea = h(
    "div",
    { class: "revise", hidden: true },
    h("label", { for: ids.args }, "Arguments (JSON)"),
    editor,
  );
  schemaSlot.hidden = true;
  const feedbackArea = h(
    "div",
    { class: "feedback", hidden: true },
    h("label", { for: ids.feedback }, "Feedback for the model"),
    feedback,
  );
  const send = h("button", { type: "submit", class: "primary", hidden: true }, "Send");
  let mode = "approve";
  const buttons = h(
    "div",
    { class: "actions" },
    h("button", { type: "button", class: "primary approve", onclick: () => decide("approve") }, "Approve"),
    h("button", { type: "button", class: "danger", onclick: () => choose("reject") }, "Reject…"),
    h("button", { type: "button", onclick: () => choose("revise") }, "Revise…"),
  );
  const form = h(
    "form",
    { class: "decide", onsubmit: (e) => (e.preventDefault(), decide(mode)) },
    reviseArea,
    problemBox,
    schemaSlot,
    feedbackArea,
    h("div", { class: "actions" }, send, h("button", { type: "button", hidden: true, class: "cancel", onclick: () => choose(null) }, "Cancel")),
  );
  const card = h(
    "article",
    { class: "approval", "aria-labelledby": ids.title, "data-approval-id": approval.id },
    h(
      "h3",
      { id: ids.title },
      "Approve ",
      h("code", null, approval.tool),
      "?",
    ),
    h(
      "p",
      { class: "meta" },
      showSession ? [h("a", { href: sessionPath(sessionId) }, `session ${sessionId.slice(0, 8)}`), " · "] : null,
      agent ? [`agent ${agent}`, " · "] : null,
      user ? [`user ${user}`, " · "] : null,
      "requested ",
      timeEl(approval.requested_at),
      approval.expires_at ? [" · expires ", timeEl(approval.expires_at)] : null,
    ),
    jsonBlock(approval.arguments ?? {}, "arguments"),
    buttons,
    form,
    status,
  );

  // A listing may leave large arguments out: the session's own list has them whole.
  if (approval.arguments_elided) {
    get(`/v1/sessions/${seg(sessionId)}/approvals`, { quiet: true }).then((listed) => {
      const whole = (listed.approvals || []).find((a) => a.id === approval.id);
      if (!whole) return;
      approval.arguments = whole.arguments;
      editor.value = JSON.stringify(whole.arguments ?? {}, null, 2);
      card.querySelector(".field")?.replaceWith(jsonBlock(whole.arguments ?? {}, "arguments"));
    }, () => {});
  }

  function choose(next) {
    mode = next || "approve";
    reviseArea.hidden = next !== "revise";
    schemaSlot.hidden = next !== "revise";
    feedbackArea.hidden = next === null;
    send.hidden = next === null;
    /** @type {HTMLElement} */ (form.querySelector(".cancel")).hidden = next === null;
    send.textContent = next === "reject" ? "Send rejection" : "Send revision";
    showProblem(null);
    if (next === "revise") {
      loadSchema();
      editor.focus();
    } else if (next === "reject") {
      feedback.focus();
    }
  }

  async function loadSchema() {
    if (!agent || schemaSlot.childElementCount) return;
    const tool = (await toolsOf(agent))[approval.tool];
    if (!tool) return;
    replace(
      schemaSlot,
      tool.description ? h("p", { class: "hint" }, tool.description) : null,
      tool.parameters
        ? h("details", { open: true }, h("summary", null, `Schema of ${approval.tool}`), h("pre", { class: "json" }, JSON.stringify(tool.parameters, null, 2)))
        : null,
    );
  }

  function showProblem(message, errors = []) {
    problemBox.hidden = !message;
    editor.setAttribute("aria-invalid", message && mode === "revise" ? "true" : "false");
    replace(
      problemBox,
      message || "",
      errors.length ? h("ul", null, errors.map((e) => h("li", null, e.field ? `${e.field}: ` : "", e.message || ""))) : null,
    );
  }

  async function decide(decision) {
    /** @type {Record<string, unknown>} */
    const body = { decision };
    if (decision !== "approve" && feedback.value.trim()) body.feedback = feedback.value.trim();
    if (decision === "revise") {
      let parsed;
      try {
        parsed = JSON.parse(editor.value);
      } catch (err) {
        showProblem(`Not valid JSON: ${err instanceof Error ? err.message : err}`);
        editor.focus();
        return;
      }
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
        showProblem("The arguments must be a JSON object.");
        editor.focus();
        return;
      }
      body.arguments = parsed;
    }
    const name = await reviewerName();
    if (!name) return;
    body.reviewer = name;
    card.dataset.sending = "true";
    for (const button of card.querySelectorAll("button")) button.disabled = true;
    try {
      const decided = await post(`/v1/sessions/${seg(sessionId)}/approvals/${seg(approval.id)}`, body);
      finish(`${capital(DONE[decision])} by ${decided.reviewer || name}.`, "done");
      window.dispatchEvent(new Event("keel:approvals"));
      if (onDecided) onDecided(decided);
    } catch (err) {
      for (const button of card.querySelectorAll("button")) button.disabled = false;
      if (err instanceof ApiError && err.status === 409) {
        finish(alreadyDecided(err.problem), "taken");
        window.dispatchEvent(new Event("keel:approvals"));
      } else if (err instanceof ApiError && err.status === 422) {
        showProblem(err.message, err.problem.errors || []);
        (decision === "revise" ? editor : feedback).focus();
      } else {
        showProblem(err instanceof Error ? err.message : String(err));
      }
    }
  }

  function finish(message, kind) {
    buttons.remove();
    form.remove();
    card.classList.remove("done", "taken");
    card.classList.add(kind);
    status.textContent = message;
  }

  // The stream says it was decided (here, or by someone else): no more buttons.
  card.addEventListener("keel:decided", (event) => {
    if (status.textContent) return; // our own answer says more
    const { decision, reviewer: who } = /** @type {CustomEvent} */ (event).detail;
    finish(`${capital(DONE[decision] || "decided")}${who ? ` by ${who}` : ""}.`, "taken");
  });

  return card;
}

const capital = (text) => text.charAt(0).toUpperCase() + text.slice(1);
