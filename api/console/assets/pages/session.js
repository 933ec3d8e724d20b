// A session: the conversation with streamed answers and a composer, pending approvals, and
// beside them the step timeline, all fed by the session's resumable event stream.

import { ApiError, get, post, seg } from "../api.js";
import { approvalCard } from "../approval.js";
import { Conversation } from "../conversation.js";
import { h, notify, replace, timeEl } from "../dom.js";
import { BASE } from "../nav.js";
import { EventStream } from "../sse.js";
import { cacheEvents, cachedEvents } from "../store.js";
import { Timeline } from "../timeline.js";

const STATUS_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  ended: "The session is closed.",
  error: "The stream stopped",
};

/** @param {HTMLElement} main @param {string[]} params */
export function render(main, [sessionId]) {
  document.title = `Session ${sessionId.slice(0, 8)} · Keel console`;
  const heading = h("h1", null, "Session ", h("code", null, sessionId));
  replace(main, heading, h("p", null, "Loading…"));
  /** @type {EventStream | null} */
  let stream = null;
  let gone = false;
  load();

  async function load() {
    let session;
    try {
      session = await get(`/v1/sessions/${seg(sessionId)}`);
    } catch (err) {
      if (gone) return;
      const text = err instanceof ApiError && err.status === 404 ? "No such session (or not yours)." : String(err instanceof Error ? err.message : err);
      replace(main, heading, h("p", { class: "problem", role: "alert" }, text), h("p", null, h("a", { href: `${BASE}/sessions` }, "Back to the sessions")));
      return;
    }
    if (gone) return;
    stream = show(main, heading, session);
  }

  return () => {
    gone = true;
    if (stream) stream.stop();
  };
}

/** Lay the page out for `session` and start its stream. */
function show(main, heading, session) {
  const id = session.id;
  const statusLine = h("p", { class: "stream-status", role: "status", "aria-live": "polite" }, STATUS_TEXT.connecting);
  const messages = h("ol", { class: "messages", "aria-label": "Messages" });
  const pendingList = h("div", { class: "cards" });
  const pending = h("section", { class: "pending-approvals", "aria-labelledby": "pending-h", hidden: true }, h("h2", { id: "pending-h" }, "Waiting for your decision"), pendingList);
  const composer = h("textarea", { id: "composer", rows: "3", required: true, "aria-describedby": "composer-hint" });
  const composerProblem = h("p", { class: "problem", role: "alert", hidden: true });
  const send = h("button", { type: "submit", class: "primary" }, "Send");
  const form = h(
    "form",
    { class: "composer", onsubmit: (e) => (e.preventDefault(), sendMessage()) },
    h("label", { for: "composer" }, "Message"),
    composer,
    h("p", { class: "hint", id: "composer-hint" }, "Enter sends, Shift+Enter starts a new line."),
    composerProblem,
    send,
  );
  const turns = h("ol", { class: "turns", "aria-label": "Turns" });
  const closed = session.status === "closed";
  replace(
    main,
    heading,
    h(
      "p",
      { class: "meta" },
      `agent ${session.agent} · user ${session.user_id} · `,
      h("span", { class: `pill ${session.status}` }, session.status),
      " · started ",
      timeEl(session.created_at),
      session.temporal_ui_url ? [" · ", h("a", { href: session.temporal_ui_url, target: "_blank", rel: "noopener" }, "Open in the Temporal UI")] : null,
    ),
    h(
      "div",
      { class: "session-layout" },
      h("section", { class: "conversation", "aria-labelledby": "conv-h" }, h("h2", { id: "conv-h" }, "Conversation"), statusLine, pending, messages, closed ? h("p", null, "This session is closed.") : form),
      h("section", { class: "timeline", "aria-labelledby": "steps-h" }, h("h2", { id: "steps-h" }, "Steps"), turns),
    ),
  );

  const timeline = new Timeline(turns, session);
  const conversation = new Conversation(messages, id);
  /** @type {Map<string, HTMLElement>} approval id → its card */
  const cards = new Map();
  /** @type {Set<number>} */
  const seen = new Set();
  const events = cachedEvents(id);

  function addCard(approval) {
    if (cards.has(approval.id)) return;
    const card = approvalCard(approval, { sessionId: id, agent: session.agent });
    card.dataset.shownAt = String(Date.now());
    cards.set(approval.id, card);
    pendingList.append(card);
    pending.hidden = false;
  }

  function dropCard(decided, live) {
    const card = cards.get(decided.approval_id);
    if (!card) return;
    cards.delete(decided.approval_id);
    card.dispatchEvent(new CustomEvent("keel:decided", { detail: decided }));
    // A card decided while someone looks at it shows the outcome a moment; one the stream
    // replays (decided long ago) goes at once.
    const fresh = Date.now() - Number(card.dataset.shownAt) < 1000 && !card.dataset.sending;
    window.setTimeout(() => {
      card.remove();
      pending.hidden = cards.size === 0;
    }, live && !fresh ? 4000 : 0);
  }

  function onEvent(eventId, type, data, live = true) {
    if (eventId === null) {
      if (type === "message.delta" && live) conversation.delta(data);
      return;
    }
    if (seen.has(eventId)) return; // a replay after a resume: shown already
    seen.add(eventId);
    if (live) {
      events.push({ id: eventId, type, data });
      cacheEvents(id, events);
    }
    timeline.add(eventId, type, data);
    if (type === "message.completed") {
      conversation.add({ seq: data.seq, role: "assistant", content: data.content, turn_id: data.turn_id });
      if (live) notify("The answer is complete.");
    } else if (["turn.started", "turn.completed", "turn.failed", "turn.cancelled"].includes(type)) {
      conversation.refresh();
      if (type !== "turn.started") conversation.endTurn(data.turn_id);
    } else if (type === "approval.requested") {
      addCard({ id: data.approval_id, tool: data.tool, arguments: data.arguments, requested_at: data.ts, expires_at: data.expires_at });
      if (live) {
        notify(`${data.tool} waits for your approval.`);
        window.dispatchEvent(new Event("keel:approvals"));
      }
    } else if (type === "approval.decided") {
      dropCard(data, live);
    }
  }

  async function sendMessage() {
    const text = composer.value;
    if (!text.trim()) return;
    send.disabled = true;
    composerProblem.hidden = true;
    try {
      const accepted = await post("/v1/chat", { message: text, session_id: id, mode: "async" });
      composer.value = "";
      conversation.local(accepted.turn_id, text);
    } catch (err) {
      composerProblem.hidden = false;
      composerProblem.textContent = err instanceof Error ? err.message : String(err);
    } finally {
      send.disabled = false;
      composer.focus();
    }
  }

  composer.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  for (const m of session.messages || []) conversation.add(m);
  if ((session.messages || []).length >= 200) conversation.refresh(); // a long one: the rest
  for (const approval of session.pending_approvals || []) addCard(approval);
  for (const e of events) onEvent(e.id, e.type, e.data, false);
  const lastId = events.length ? events[events.length - 1].id : null;

  return new EventStream(`/v1/sessions/${seg(id)}/events`, {
    lastId,
    onEvent,
    onStatus(state, detail) {
      statusLine.className = `stream-status ${state}`;
      statusLine.textContent = STATUS_TEXT[state] + (detail && state === "error" ? `: ${detail}` : "");
      if (state === "ended") form.remove();
    },
  }).start();
}

