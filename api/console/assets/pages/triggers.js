// The formation's triggers: list them and fire one with JSON data.

import { ApiError, get, post, seg } from "../api.js";
import { h, replace } from "../dom.js";
import { sessionPath } from "../nav.js";

/** @param {HTMLElement} main */
export function render(main) {
  document.title = "Triggers · Keel console";
  const list = h("div", { class: "cards" });
  const summary = h("p", { class: "summary", role: "status" }, "Loading…");
  replace(main, h("h1", null, "Triggers"), summary, list);
  get("/v1/triggers").then(
    ({ triggers }) => {
      summary.textContent = triggers.length ? "" : "The formation has no triggers.";
      replace(list, triggers.map(card));
    },
    (err) => (summary.textContent = err.message),
  );
}

let counter = 0;

function card(trigger) {
  const n = ++counter;
  const data = h("textarea", { id: `tr-${n}-data`, class: "code", rows: "4", spellcheck: "false", value: "{}", "aria-describedby": `tr-${n}-out` });
  const out = h("div", { id: `tr-${n}-out`, class: "outcome", role: "status", "aria-live": "polite" });
  const form = h(
    "form",
    { onsubmit: (e) => (e.preventDefault(), fire()) },
    h("label", { for: `tr-${n}-data` }, "Data (JSON)"),
    data,
    h("button", { type: "submit", class: "primary", disabled: trigger.signed }, "Fire", h("span", { class: "sr-only" }, ` ${trigger.name}`)),
  );

  async function fire() {
    let body;
    try {
      body = JSON.parse(data.value || "{}");
    } catch (err) {
      return show(`Not valid JSON: ${err instanceof Error ? err.message : err}`, true);
    }
    try {
      const accepted = await post(`/v1/triggers/${seg(trigger.name)}`, { data: body });
      replace(out, `Fired: turn ${accepted.turn_id} is ${accepted.status} in `, h("a", { href: sessionPath(accepted.session_id) }, `session ${accepted.session_id.slice(0, 8)}`), ".");
      data.removeAttribute("aria-invalid");
    } catch (err) {
      const missing = err instanceof ApiError && Array.isArray(err.problem.missing) ? ` (missing: ${err.problem.missing.join(", ")})` : "";
      show(`${err instanceof Error ? err.message : err}${missing}`, true);
    }
  }

  function show(message, bad) {
    out.textContent = message;
    if (bad) data.setAttribute("aria-invalid", "true");
  }

  return h(
    "article",
    { class: "trigger", "aria-labelledby": `tr-${n}-t`, "data-trigger": trigger.name },
    h("h2", { id: `tr-${n}-t` }, trigger.name),
    h(
      "p",
      { class: "meta" },
      `agent ${trigger.agent}`,
      trigger.schedule ? [" · schedule ", h("code", null, trigger.schedule)] : null,
      trigger.signed ? " · signed: fired by its webhook sender, not from here" : null,
    ),
    form,
    out,
  );
}
