// A modal question (API key, user id, reviewer name) in a <dialog>: focus stays inside it.

import { h } from "./dom.js";

/** @type {Map<string, Promise<string | null>>} */
const open = new Map();

/**
 * Ask one question; concurrent asks of the same `id` share one dialog.
 * @param {{id: string, title: string, label: string, hint?: string, type?: string, value?: string,
 *          maxlength?: number}} q
 * @returns {Promise<string | null>} the answer, or null when dismissed.
 */
export function ask(q) {
  const pending = open.get(q.id);
  if (pending) return pending;
  const answer = new Promise((resolve) => {
    const inputId = `ask-${q.id}`;
    const input = h("input", {
      id: inputId,
      name: q.id,
      type: q.type || "text",
      required: true,
      autocomplete: q.type === "password" ? "off" : "on",
      spellcheck: "false",
      value: q.value || "",
      maxlength: q.maxlength ? String(q.maxlength) : null,
      "aria-describedby": q.hint ? `${inputId}-hint` : null,
    });
    const form = h(
      "form",
      { method: "dialog" },
      h("h2", { id: `${inputId}-title` }, q.title),
      h("label", { for: inputId }, q.label),
      input,
      q.hint ? h("p", { class: "hint", id: `${inputId}-hint` }, q.hint) : null,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary", value: "ok" }, "Continue"),
        h("button", { type: "button", onclick: () => dialog.close("") }, "Cancel"),
      ),
    );
    const dialog = /** @type {HTMLDialogElement} */ (
      h("dialog", { "aria-labelledby": `${inputId}-title` }, form)
    );
    dialog.addEventListener("close", () => {
      open.delete(q.id);
      const value = dialog.returnValue === "ok" ? input.value.trim() : "";
      dialog.remove();
      resolve(value || null);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
  open.set(q.id, answer);
  return answer;
}
