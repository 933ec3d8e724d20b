// The step timeline: one section per turn, one item per durable event, built from the stream.

import { h, jsonBlock, replace, timeEl } from "./dom.js";

/** The Temporal UI's workflows address, `…/namespaces/{ns}/workflows`, from the session's link. */
function workflowsBase(session) {
  const url = session.temporal_ui_url || "";
  const at = url.indexOf("/workflows/");
  return at < 0 ? null : url.slice(0, at + "/workflows".length);
}

/** The Temporal UI link of one run, or the session's own link when the run is unknown. */
export function runLink(session, runId) {
  const base = workflowsBase(session);
  if (!runId || !base) return session.temporal_ui_url || "";
  return `${base}/${encodeURIComponent(session.workflow_id)}/${encodeURIComponent(runId)}/history`;
}

/** The Temporal UI link of another workflow (a delegated specialist's), beside the session's. */
function workflowLink(session, workflowId) {
  const base = workflowsBase(session);
  return base ? `${base}/${encodeURIComponent(workflowId)}` : null;
}

const TITLES = {
  "turn.started": "Turn started",
  "agent.selected": "Agent selected",
  "message.completed": "Answer",
  "tool.call": "Tool call",
  "approval.requested": "Approval requested",
  "approval.decided": "Approval decided",
  "tool.result": "Tool result",
  "memory.recalled": "Memory recalled",
  "memory.stored": "Memory stored",
  handoff: "Hand-off",
  "plan.proposed": "Plan proposed",
  "plan.decided": "Plan decided",
  "plan.step.started": "Plan step started",
  "plan.step.completed": "Plan step completed",
  "plan.completed": "Plan completed",
  "turn.completed": "Turn completed",
  "turn.failed": "Turn failed",
  "turn.cancelled": "Turn cancelled",
  "session.closed": "Session closed",
};

function memoryCount(data) {
  if (typeof data.count === "number") return data.count;
  return Array.isArray(data.memories) ? data.memories.length : 0;
}

/** A link to the child a delegation ran in: the specialist's workflow in the Temporal UI. */
function childLink(session, data) {
  const href = data.child_workflow_id ? workflowLink(session, data.child_workflow_id) : null;
  if (!href) return null;
  return [" · ", h("a", { href, target: "_blank", rel: "noopener" }, "child session")];
}

/** What an event says, as nodes under its title. */
function body(type, data, session) {
  switch (type) {
    case "turn.started":
      return [`agent ${data.agent}`];
    case "agent.selected":
      return [`${data.agent}`, data.reason ? ` — ${data.reason}` : ""];
    case "message.completed":
      return [jsonBlock(data.content, "text")];
    case "tool.call":
      return [h("code", null, data.tool), jsonBlock(data.arguments ?? {}, "arguments")];
    case "approval.requested":
      return [h("code", null, data.tool), " waits for a person", jsonBlock(data.arguments ?? {}, "arguments")];
    case "approval.decided":
      return [
        h("code", null, data.tool),
        ` ${data.decision}`,
        data.reviewer ? ` by ${data.reviewer}` : ` (${data.decided_by})`,
        data.feedback ? h("p", { class: "quote" }, `Feedback: ${data.feedback}`) : null,
        data.arguments ? jsonBlock(data.arguments, "revised arguments") : null,
      ];
    case "tool.result":
      return [
        h("code", null, data.tool),
        data.is_error ? " failed" : "",
        jsonBlock(data.glimpse ?? "", "result"),
      ];
    case "memory.recalled":
    case "memory.stored":
      return [`${memoryCount(data)} ${memoryCount(data) === 1 ? "entry" : "entries"}`];
    case "handoff":
      return [
        `${data.from_agent} → ${data.to_agent}`,
        data.reason ? ` — ${data.reason}` : "",
        childLink(session, data),
      ];
    case "plan.proposed":
      return [
        data.goal || "",
        data.needs_decision ? " — waits for a decision" : "",
        jsonBlock(data.steps ?? [], "steps"),
      ];
    case "plan.decided":
      return [
        `${data.decision}`,
        data.reviewer ? ` by ${data.reviewer}` : ` (${data.decided_by})`,
        data.feedback ? h("p", { class: "quote" }, `Feedback: ${data.feedback}`) : null,
        data.steps ? jsonBlock(data.steps, "revised steps") : null,
      ];
    case "plan.step.started":
      return [h("code", null, data.step_id), ` → ${data.agent}`, childLink(session, data)];
    case "plan.step.completed":
      return [
        h("code", null, data.step_id),
        ` ${data.status}`,
        jsonBlock(data.status === "failed" ? data.error ?? "" : data.glimpse ?? "", "answer"),
      ];
    case "plan.completed":
      return [data.status, data.error ? ` — ${data.error}` : ""];
    case "turn.completed":
      return [usageText(data.usage)];
    case "turn.failed":
      return [data.error, data.error_id ? ` (error id ${data.error_id})` : ""];
    case "session.closed":
      return [data.reason || ""];
    default:
      return [jsonBlock(data, "data")];
  }
}

/** "12 in · 9 out tokens" (and cost when the API gives one). */
export function usageText(usage) {
  if (!usage) return "";
  const cost = typeof usage.cost_usd === "number" ? ` · $${usage.cost_usd.toFixed(4)}` : "";
  return `${usage.prompt_tokens ?? 0} in · ${usage.completion_tokens ?? 0} out tokens${cost}`;
}

/** The timeline of one session: call `add(id, type, data)` for each durable event once. */
export class Timeline {
  /** @param {HTMLElement} list an <ol> @param {Record<string, any>} session */
  constructor(list, session) {
    this.list = list;
    this.session = session;
    /** @type {Map<string, {el: HTMLElement, steps: HTMLElement, status: HTMLElement, usage: HTMLElement}>} */
    this.turns = new Map();
    /** @type {Map<string, HTMLElement>} approval id → its requested step */
    this.requests = new Map();
  }

  turn(turnId, data = {}) {
    let turn = this.turns.get(turnId);
    if (turn) return turn;
    const n = this.turns.size + 1;
    const status = h("span", { class: "pill running" }, "running");
    const usage = h("span", { class: "usage" });
    const link = runLink(this.session, data.run_id);
    const steps = h("ol", { class: "steps" });
    const el = h(
      "li",
      { class: "turn", "data-turn-id": turnId },
      h(
        "div",
        { class: "turn-head" },
        h("h3", null, `Turn ${n}`),
        status,
        usage,
        link ? h("a", { href: link, target: "_blank", rel: "noopener", class: "temporal" }, "Temporal UI", h("span", { class: "sr-only" }, ` for turn ${n}`)) : null,
      ),
      steps,
    );
    turn = { el, steps, status, usage };
    this.turns.set(turnId, turn);
    this.list.append(el);
    return turn;
  }

  add(id, type, data) {
    const turnId = data.turn_id || "session";
    const turn = this.turn(turnId, type === "turn.started" ? data : {});
    const step = h(
      "li",
      { class: `step ${type.replace(/\./g, "-")}`, "data-event-id": id, "data-type": type },
      h("div", { class: "step-head" }, h("strong", null, TITLES[type] || type), " ", timeEl(data.ts)),
      h("div", { class: "step-body" }, body(type, data, this.session)),
    );
    turn.steps.append(step);
    if (type === "approval.requested") {
      step.classList.add("pending");
      this.requests.set(data.approval_id, step);
      this.end(turn, "awaiting", "", "awaiting approval");
    } else if (type === "approval.decided") {
      this.requests.get(data.approval_id)?.classList.remove("pending");
      if (!turn.el.querySelector(".step.pending")) this.end(turn, "running", "");
    } else if (type === "turn.completed") {
      this.end(turn, "completed", usageText(data.usage));
    } else if (type === "turn.failed" || type === "turn.cancelled") {
      this.end(turn, type.split(".")[1], "");
    }
  }

  end(turn, status, usage, label = status) {
    turn.status.className = `pill ${status}`;
    turn.status.textContent = label;
    replace(turn.usage, usage);
  }
}
