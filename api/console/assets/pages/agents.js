// The agents of the formation: role, model, tools, routes; start a session with one.

import { get, post, seg } from "../api.js";
import { h, replace } from "../dom.js";
import { navigate, sessionPath } from "../nav.js";

/** @param {HTMLElement} main */
export function render(main) {
  document.title = "Agents · Keel console";
  const rows = h("tbody");
  const problem = h("p", { class: "problem", role: "alert", hidden: true });
  replace(
    main,
    h("h1", null, "Agents"),
    problem,
    h(
      "table",
      { class: "agents" },
      h("caption", { class: "sr-only" }, "Agents of the formation"),
      h("thead", null, h("tr", null, ["Agent", "Role", "Model", "Tools", "Routes", ""].map((t) => h("th", { scope: "col" }, t)))),
      rows,
    ),
  );

  get("/v1/agents").then(
    ({ agents }) => {
      replace(rows, agents.map(row));
      for (const agent of agents) markGated(agent.name);
    },
    (err) => {
      problem.hidden = false;
      problem.textContent = err.message;
    },
  );

  function row(agent) {
    return h(
      "tr",
      { "data-agent": agent.name },
      h("th", { scope: "row", "data-label": "Agent" }, agent.name, agent.description ? h("p", { class: "hint" }, agent.description) : null),
      h("td", { "data-label": "Role" }, agent.role),
      h("td", { "data-label": "Model" }, h("code", null, agent.model)),
      h("td", { "data-label": "Tools" }, agent.tools.length ? h("ul", { class: "tags" }, agent.tools.map((t) => h("li", { "data-tool": t }, h("code", null, t)))) : "none"),
      h("td", { "data-label": "Routes" }, agent.routes.length ? agent.routes.join(", ") : "none"),
      h(
        "td",
        null,
        h("button", { type: "button", onclick: () => start(agent.name) }, "Start a session", h("span", { class: "sr-only" }, ` with ${agent.name}`)),
      ),
    );
  }

  async function start(agent) {
    try {
      navigate(sessionPath((await post("/v1/sessions", { agent })).id));
    } catch (err) {
      problem.hidden = false;
      problem.textContent = err instanceof Error ? err.message : String(err);
    }
  }

  /** Mark the tools that need approval, where the API lists an agent's tools. */
  async function markGated(agent) {
    let listed;
    try {
      listed = await get(`/v1/agents/${seg(agent)}/tools`, { quiet: true });
    } catch {
      return;
    }
    for (const tool of listed.tools || []) {
      const item = rows.querySelector(`tr[data-agent="${CSS.escape(agent)}"] li[data-tool="${CSS.escape(tool.name)}"]`);
      if (!item) continue;
      if (tool.description) item.setAttribute("title", tool.description);
      if (tool.requires_approval) item.append(" ", h("span", { class: "pill awaiting" }, "needs approval"));
    }
  }
}
