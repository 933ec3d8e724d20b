// Calls to the Keel API: the key and user on every request, problem+json errors as ApiError,
// and the questions a 401 (which key?) or a client key without a user (which user?) need.

import { ask } from "./ask.js";
import { credentials, setKey, setUser } from "./store.js";

/** An HTTP error answer, with its RFC 9457 problem. */
export class ApiError extends Error {
  /** @param {number} status @param {Record<string, any>} problem */
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }

  /** The problem type's last segment: `approval-decided`, `unauthorized`, … */
  get kind() {
    return String(this.problem.type || "").split("/").pop();
  }
}

/** Headers every call carries: the key (never in a URL) and the user it acts for. */
export function authHeaders(extra = {}) {
  const { key, user } = credentials();
  /** @type {Record<string, string>} */
  const headers = { ...extra };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (user) headers["X-User-Id"] = user;
  return headers;
}

/** A random Idempotency-Key (crypto.randomUUID needs a secure context; this does not). */
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Read an error answer's problem (or make one from its status). */
export async function problemOf(response) {
  try {
    const body = await response.json();
    if (body && typeof body === "object") return body;
  } catch {
    // not JSON: a proxy's page, say
  }
  return { status: response.status, title: response.statusText || `HTTP ${response.status}` };
}

/**
 * After a 401 or a missing user: ask for what is missing.
 * @returns {Promise<boolean>} whether to try again.
 */
export async function recover(status, problem) {
  if (status === 401) {
    const key = await ask({
      id: "key",
      title: "This API needs a key",
      label: "API key",
      type: "password",
      hint:
        (credentials().key ? "That key was refused. " : "") +
        "It is kept in this tab only (sessionStorage) and sent as a bearer header.",
    });
    if (!key) return false;
    setKey(key);
    setUser(null);
    identityChanged();
    return true;
  }
  const kind = String(problem.type || "").split("/").pop();
  if (status === 422 && kind === "user-id-required") {
    const user = await ask({
      id: "user",
      title: "Which user?",
      label: "User id",
      hint: "A client key acts for one user: you will see that user's sessions only.",
    });
    if (!user) return false;
    setUser(user);
    identityChanged();
    return true;
  }
  return false;
}

function identityChanged() {
  window.dispatchEvent(new CustomEvent("keel:identity"));
}

/**
 * Call the API.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body] sent as JSON
 * @param {{quiet?: boolean}} [options] quiet: never ask for a key or user (background calls)
 * @returns {Promise<any>} the JSON answer (null for 204)
 * @throws {ApiError}
 */
export async function call(method, path, body, { quiet = false } = {}) {
  const idempotency = method === "POST" ? newKey() : null;
  for (let attempt = 0; ; attempt++) {
    /** @type {Record<string, string>} */
    const extra = { Accept: "application/json" };
    if (body !== undefined) extra["Content-Type"] = "application/json";
    if (idempotency) extra["Idempotency-Key"] = idempotency;
    const response = await fetch(path, {
      method,
      headers: authHeaders(extra),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.ok) return response.status === 204 ? null : response.json();
    const problem = await problemOf(response);
    if (!quiet && attempt < 5 && (await recover(response.status, problem))) continue;
    throw new ApiError(response.status, problem);
  }
}

export const get = (path, options) => call("GET", path, undefined, options);
export const post = (path, body) => call("POST", path, body ?? {});

/** `?a=1&b=2` from the values that are set. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** The id of a path segment, escaped. */
export const seg = (value) => encodeURIComponent(String(value));
