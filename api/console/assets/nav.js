// Moving between console pages without a reload (app.js listens and renders the page).

export const BASE = "/console";

/** Go to a console path (`/console/...`). */
export function navigate(path) {
  history.pushState(null, "", path);
  window.dispatchEvent(new Event("keel:navigate"));
}

/** The console path of a session. */
export const sessionPath = (id) => `${BASE}/sessions/${encodeURIComponent(id)}`;
