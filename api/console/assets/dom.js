// Building DOM nodes from data, never from markup strings: every text the API sends is set as text, never parsed.

/**
 * Create an element.
 * @param {string} tag
 * @param {Record<string, unknown> | null} [attrs] `on<event>` adds a listener, `class` the class,
 *   `value`/`checked` set the property; false, null and undefined leave the attribute out.
 * @param {...(Node | string | number | null | undefined | false | Array<unknown>)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), /** @type {EventListener} */ (value));
    } else if (name === "class") {
      el.className = String(value);
    } else if (name === "value" || name === "checked") {
      /** @type {any} */ (el)[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children (nested arrays flattened; null, undefined and false skipped). */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace everything inside `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A short local time for an ISO timestamp ("" when absent). */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

/** A `<time>` element for an ISO timestamp. */
export function timeEl(iso) {
  return iso ? h("time", { datetime: iso }, when(iso)) : h("span", null, "—");
}

/** JSON, indented, in a `<pre>`; folded into `<details>` when long. */
export function jsonBlock(value, label) {
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  const pre = h("pre", { class: "json" }, text);
  if (text.length <= 160 && text.split("\n").length <= 6) {
    return h("div", { class: "field" }, h("span", { class: "label" }, label, ": "), pre);
  }
  return h("details", { class: "field" }, h("summary", null, `${label} (${text.length} characters)`), pre);
}

let noticeTimer = 0;

/** Announce a short message in the page's live region. */
export function notify(message) {
  const region = document.getElementById("notice");
  if (!region) return;
  region.textContent = "";
  // A fresh text node makes screen readers speak a repeated message again.
  window.setTimeout(() => {
    region.textContent = message;
  }, 30);
  window.clearTimeout(noticeTimer);
  noticeTimer = window.setTimeout(() => {
    region.textContent = "";
  }, 5000);
}
