// Server-sent events over fetch() (EventSource cannot send the key header), resumed after a
// drop with Last-Event-ID, backing off while the server or the network is away.

import { authHeaders, problemOf, recover } from "./api.js";

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;
const SILENCE_MS = 45_000;
/** The server pings every 15 s; this long without a byte means the connection is dead. */

/**
 * Parse an SSE byte stream into {id, event, data} frames.
 * @param {ReadableStream<Uint8Array>} body
 * @param {(frame: {id: string | null, event: string, data: string}) => void} onFrame
 * @param {() => void} onBytes called whenever bytes arrive (a heartbeat too)
 */
export async function readFrames(body, onFrame, onBytes) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  /** @type {{id: string | null, event: string, data: string[]}} */
  let frame = { id: null, event: "message", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onBytes();
    buffer += value;
    let cut;
    while ((cut = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, cut);
      buffer = buffer.slice(cut + (buffer.startsWith("\r\n", cut) ? 2 : 1));
      if (line === "") {
        if (frame.data.length) onFrame({ id: frame.id, event: frame.event, data: frame.data.join("\n") });
        frame = { id: null, event: "message", data: [] };
        continue;
      }
      if (line.startsWith(":")) continue; // a heartbeat comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "id") frame.id = text;
      else if (field === "event") frame.event = text;
      else if (field === "data") frame.data.push(text);
    }
  }
}

/**
 * A resumable stream of a URL's events.
 *
 * `onEvent(id, type, data)` gets each frame (id null for deltas); `onStatus(state, detail)`
 * gets "connecting", "live", "reconnecting", "ended" or "error".
 */
export class EventStream {
  /**
   * @param {string} url
   * @param {{onEvent: Function, onStatus: Function, lastId?: number | null, endOn?: string[]}} options
   */
  constructor(url, { onEvent, onStatus, lastId = null, endOn = ["session.closed"] }) {
    this.url = url;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.lastId = lastId;
    this.endOn = new Set(endOn);
    this.stopped = false;
    this.ended = false;
    this.controller = null;
    this.retries = 0;
    this.wake = null;
    this.goOnline = () => this.wake && this.wake();
    this.goOffline = () => this.controller && this.controller.abort();
  }

  start() {
    window.addEventListener("online", this.goOnline);
    window.addEventListener("offline", this.goOffline);
    this.running = this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.goOnline);
    window.removeEventListener("offline", this.goOffline);
    if (this.controller) this.controller.abort();
    if (this.wake) this.wake();
  }

  async run() {
    let delay = FIRST_DELAY_MS;
    this.onStatus("connecting");
    while (!this.stopped && !this.ended) {
      try {
        const done = await this.connect();
        if (done) return;
        delay = FIRST_DELAY_MS; // it was up: start backing off afresh
      } catch (err) {
        if (this.stopped) return;
        if (err && err.fatal) {
          this.onStatus("error", err.message);
          return;
        }
      }
      if (this.stopped || this.ended) break;
      this.retries += 1;
      this.onStatus("reconnecting", `retry in ${Math.round(delay / 100) / 10} s`);
      await this.pause(delay + Math.random() * delay * 0.3);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
    if (this.ended) this.onStatus("ended");
  }

  pause(ms) {
    return new Promise((resolve) => {
      const timer = window.setTimeout(done, ms);
      function done() {
        window.clearTimeout(timer);
        resolve(undefined);
      }
      this.wake = done;
    });
  }

  /** One connection; true when the stream is over for good. */
  async connect() {
    const controller = new AbortController();
    this.controller = controller;
    /** @type {Record<string, string>} */
    const extra = { Accept: "text/event-stream" };
    if (this.lastId !== null) extra["Last-Event-ID"] = String(this.lastId);
    const response = await fetch(this.url, {
      headers: authHeaders(extra),
      signal: controller.signal,
      cache: "no-store",
    });
    if (!response.ok) {
      const problem = await problemOf(response);
      if (await recover(response.status, problem)) return false;
      if (response.status >= 400 && response.status < 500 && response.status !== 429) {
        const err = new Error(problem.detail || problem.title || `HTTP ${response.status}`);
        /** @type {any} */ (err).fatal = true;
        throw err;
      }
      return false;
    }
    this.onStatus("live");
    let timer = 0;
    const watch = () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => controller.abort(), SILENCE_MS);
    };
    watch();
    try {
      await readFrames(
        /** @type {ReadableStream<Uint8Array>} */ (response.body),
        (frame) => {
          if (frame.id !== null && frame.id !== "") this.lastId = Number(frame.id);
          let data;
          try {
            data = JSON.parse(frame.data);
          } catch {
            return;
          }
          this.onEvent(frame.id === null || frame.id === "" ? null : Number(frame.id), frame.event, data);
          if (this.endOn.has(frame.event)) this.ended = true;
        },
        watch,
      );
    } finally {
      window.clearTimeout(timer);
    }
    return this.ended;
  }
}
