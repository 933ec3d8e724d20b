// What the console remembers in the browser: the key for this tab only, the reviewer's name longer.

const KEY = "keel.key";
const USER = "keel.user";
const REVIEWER = "keel.reviewer";

/** @returns {{key: string | null, user: string | null}} */
export function credentials() {
  return { key: sessionStorage.getItem(KEY), user: sessionStorage.getItem(USER) };
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export function setUser(user) {
  if (user) sessionStorage.setItem(USER, user);
  else sessionStorage.removeItem(USER);
}

export function forget() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(USER);
}

export function reviewer() {
  return localStorage.getItem(REVIEWER);
}

export function setReviewer(name) {
  localStorage.setItem(REVIEWER, name);
}

/** Events of a session seen in this tab, so a reload resumes after the last one. */
export function cachedEvents(sessionId) {
  try {
    const raw = sessionStorage.getItem(`keel.events.${sessionId}`);
    return raw ? JSON.parse(raw) : [];
  } catch {
    return [];
  }
}

const MAX_CACHED = 400;

export function cacheEvents(sessionId, events) {
  const key = `keel.events.${sessionId}`;
  try {
    if (events.length > MAX_CACHED) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, JSON.stringify(events));
  } catch {
    sessionStorage.removeItem(key); // full: the stream replays from the start instead
  }
}
