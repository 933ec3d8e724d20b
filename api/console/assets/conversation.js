// The conversation of a session: stored messages in `seq` order, the answer being streamed,
// and messages sent but not stored yet; each shown once, whatever arrives twice.

import { get, query, seg } from "./api.js";
import { h } from "./dom.js";

const PAGE = 200;
/** `GET /v1/sessions/{id}` gives this many messages at most by default. */

function bubble(role, text, extra = "") {
  return h(
    "li",
    { class: `message ${role}${extra}` },
    h("span", { class: "who" }, role === "user" ? "User" : "Assistant"),
    h("div", { class: "text" }, text),
  );
}

export class Conversation {
  /** @param {HTMLElement} list an <ol> @param {string} sessionId */
  constructor(list, sessionId) {
    this.list = list;
    this.sessionId = sessionId;
    /** @type {Map<number, HTMLElement>} seq → message */
    this.shown = new Map();
    /** @type {Map<string, HTMLElement>} turn id → the user's message not stored yet */
    this.sent = new Map();
    /** @type {Set<string>} turns whose user message came from the store */
    this.stored = new Set();
    /** @type {Map<string, {el: HTMLElement, step: number, attempt: number}>} turn → streaming */
    this.typing = new Map();
    this.maxSeq = -1;
    /** @type {Promise<void> | null} */
    this.fetching = null;
  }

  /** A stored message (`{seq, role, content, turn_id}`); tool messages live in the timeline. */
  add(m) {
    this.maxSeq = Math.max(this.maxSeq, m.seq);
    if (this.shown.has(m.seq) || m.role === "tool" || !m.content) return;
    const item = bubble(m.role, m.content);
    item.dataset.seq = String(m.seq);
    this.shown.set(m.seq, item);
    if (m.role === "user") {
      this.stored.add(m.turn_id);
      this.sent.get(m.turn_id)?.remove();
      this.sent.delete(m.turn_id);
    } else {
      this.endTurn(m.turn_id);
    }
    const later = [...this.shown.keys()].filter((s) => s > m.seq).sort((a, b) => a - b)[0];
    const before = later === undefined ? this.list.querySelector(".local, .typing") : this.shown.get(later);
    this.list.insertBefore(item, before ?? null);
  }

  /** A piece of a streamed answer (`message.delta`): a new step or a retry starts over. */
  delta(data) {
    let current = this.typing.get(data.turn_id);
    if (current && data.step === current.step && data.attempt < current.attempt) return;
    if (current && (data.step !== current.step || data.attempt > current.attempt)) {
      /** @type {HTMLElement} */ (current.el.querySelector(".text")).textContent = "";
    }
    if (!current) {
      const el = bubble("assistant", "", " typing");
      el.setAttribute("aria-busy", "true");
      this.list.append(el);
      current = { el, step: data.step, attempt: data.attempt };
      this.typing.set(data.turn_id, current);
    }
    current.step = data.step;
    current.attempt = data.attempt;
    /** @type {HTMLElement} */ (current.el.querySelector(".text")).append(data.text);
  }

  /** The turn ended: its streamed text, if any is left, goes. */
  endTurn(turnId) {
    this.typing.get(turnId)?.el.remove();
    this.typing.delete(turnId);
  }

  /** The user's message of `turnId`, shown until the store has it. */
  local(turnId, text) {
    if (this.sent.has(turnId) || this.stored.has(turnId)) return;
    const item = bubble("user", text, " local");
    this.sent.set(turnId, item);
    this.list.insertBefore(item, this.list.querySelector(".typing"));
  }

  /** Read the messages stored after the last one shown (several pages if need be). */
  refresh() {
    this.fetching ??= (async () => {
      try {
        for (;;) {
          const path = `/v1/sessions/${seg(this.sessionId)}${query({ after_seq: this.maxSeq, limit: PAGE })}`;
          const { messages } = await get(path, { quiet: true });
          for (const m of messages) this.add(m);
          if (messages.length < PAGE) return;
        }
      } catch {
        // the next turn event reads them again
      } finally {
        this.fetching = null;
      }
    })();
    return this.fetching;
  }
}
