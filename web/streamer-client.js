/**
 * streamer-client.js — a small browser client of the streamer protocol v1 (ES module, no dependencies).
 *
 *   import { StreamerClient } from "/web/streamer-client.js";
 *
 *   const client = new StreamerClient({ baseUrl: location.origin });       // demo mode: no API key
 *   const session = client.connect({ language: "en", sample_rate: 16000 }, {
 *     onTranscriptPartial: (e) => show(e.text),
 *     onTranscriptFinal: (e, meta) => append(e.text, e.audio_start_ms + meta.offsetMs),
 *     onStateChange: (state, info) => console.log(state, info),   // connecting | live | reconnecting | closed
 *     onFailure: (err) => console.warn(err.message),              // a StreamerError (see below)
 *   });
 *   await session.ready;                 // resolves on the first `session.created`
 *   session.sendAudio(int16Chunk);       // any whole number of PCM16 mono samples at config.sample_rate
 *   await session.close();               // sends session.close; resolves with `session.closed`
 *
 * Sessions are minted over REST: with an `apiKey`, `POST /v1/sessions` (Authorization: Bearer); without one,
 * `POST /v1/demo/session` (same-origin pages of a server in demo mode; never put an API key in a public
 * page). The WebSocket then authenticates with the subprotocols `["streamer.v1", "token.<jwt>"]`, so the
 * token never appears in a URL or a log line.
 *
 * Handlers: `onEvent(event, meta)` sees every server event; per-type handlers are named after the type,
 * e.g. `session.created` -> `onSessionCreated`, `transcript.final` -> `onTranscriptFinal`, `error` ->
 * `onError` (the server's `error` event). Lifecycle: `onStateChange(state, info)` and `onFailure(error)`
 * for problems on this side of the wire (a refused session, a dropped socket, a close code).
 * `meta` is `{ sessionId, generation, offsetMs, resumed }`: `generation` counts server sessions behind
 * this Session object (a reconnect without resume starts a new one, whose `seq` and audio times restart),
 * and `offsetMs` is the audio that earlier server sessions consumed, to keep a continuous timeline.
 *
 * Reconnection: when the socket drops unexpectedly (network loss, 1001 restart, 1011, 1013), the session
 * reconnects with exponential backoff. It does not after `close()`, a 1000 close, a 1008 policy close
 * (auth, rate limit, quota, session length: retrying cannot help) or a 1009 (the client's own bug).
 * With an API key it first tries to resume (`POST /v1/sessions/{id}/resume` + `last_seq`), which keeps
 * the session, its `seq` and its timeline; demo sessions cannot be resumed and start a new session.
 * While the last final's translations have not all arrived it resumes from the final before it (the
 * server replays only what follows `last_seq`) and skips the repeated final, as docs/protocol.md says.
 * Audio sent while (re)connecting is buffered up to `maxBufferMs` (oldest dropped first).
 * Audio already sent after the last final is kept too (up to `maxResendMs`) and sent again on resume, from
 * where the server says its transcript ends (`audio_from_ms` on the resumed socket): a sentence in flight
 * when the connection, or the server instance behind it, died is transcribed once on the new connection.
 *
 * Containers: with `encoding` one of `CONTAINER_ENCODINGS` (`webm`, `ogg`, `wav`, `mp3`, `flac`,
 * `container`), `sendAudio` takes a container's bytes as a recorder produces them (MediaRecorder's Blobs,
 * ArrayBuffers, typed arrays), in order, the header first. Nothing is dropped while (re)connecting (a lost
 * header would lose the stream) and nothing is kept to be sent again: a new connection's audio is a new
 * container stream, so after a reconnect (`onStateChange("live", {reconnected: true})`) the app restarts
 * its recorder; the old recorder's bytes still waiting are discarded.
 */

const SUBPROTOCOL = "streamer.v1";
/** `encoding` values whose audio is a container's bytes (docs/protocol.md, Containers). */
export const CONTAINER_ENCODINGS = Object.freeze(["webm", "ogg", "wav", "mp3", "flac", "container"]);
const TOKEN_PREFIX = "token.";

/** Close codes of protocol v1 and what they mean to a user. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY: 1008,
  TOO_LARGE: 1009,
  INTERNAL_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
});

const CLOSE_MESSAGES = {
  1000: "The session ended normally.",
  1001: "The server is restarting or shutting down.",
  1006: "The connection was lost (network problem, or the server could not be reached).",
  1008: "The server ended the session for a policy reason (authentication, rate limit, quota or session length).",
  1009: "An audio frame was too large (more than 1 s of audio).",
  1011: "The server hit an internal error.",
  1013: "The server is overloaded or its model is unavailable. Try again in a moment.",
};

/** A user-readable sentence for a WebSocket close code (and the reason the server gave, if any). */
export function describeClose(code, reason = "") {
  const base = CLOSE_MESSAGES[code] ?? `The connection closed (code ${code}).`;
  return reason ? `${base} (${reason})` : base;
}

/**
 * A problem seen by the client. `status` is the HTTP status of a refused REST call, `code` the
 * contract's error code (e.g. `overloaded`), `closeCode` the WebSocket close code, `retryAfterMs`
 * the server's `Retry-After`, and `fatal` whether the session gave up (no further reconnect).
 */
export class StreamerError extends Error {
  constructor(
    message,
    { status = null, code = null, closeCode = null, retryable = false, retryAfterMs = null, fatal = false } = {},
  ) {
    super(message);
    this.name = "StreamerError";
    this.status = status;
    this.code = code;
    this.closeCode = closeCode;
    this.retryable = retryable;
    this.retryAfterMs = retryAfterMs;
    this.fatal = fatal;
  }
}

const DEFAULTS = Object.freeze({
  connectTimeoutMs: 15000, // REST call + WebSocket until `session.created`
  closeTimeoutMs: 20000, // `session.close` until `session.closed` (the server finalizes first)
  maxReconnectAttempts: 8,
  backoffBaseMs: 500,
  backoffMaxMs: 15000,
  maxBufferMs: 3000, // audio kept while (re)connecting
  maxResendMs: 30000, // audio sent after the last final, kept to be sent again on resume
});

/** "transcript.final" -> "onTranscriptFinal" */
function handlerName(type) {
  return "on" + String(type).split(/[._]/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join("");
}

function toArrayBuffer(data) {
  if (data instanceof ArrayBuffer) return data;
  if (ArrayBuffer.isView(data)) {
    const { buffer, byteOffset, byteLength } = data;
    return byteOffset === 0 && byteLength === buffer.byteLength ? buffer : buffer.slice(byteOffset, byteOffset + byteLength);
  }
  throw new TypeError("sendAudio expects a typed array, an ArrayBuffer (or, for a container, a Blob)");
}

async function errorFromResponse(response, what) {
  let code = null;
  let message = "";
  try {
    const body = await response.json();
    code = body?.error?.code ?? null;
    message = body?.error?.message ?? "";
  } catch {
    // not JSON (a proxy's error page): the status alone has to do
  }
  const retryAfter = Number(response.headers.get("Retry-After"));
  const retryAfterMs = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : null;
  const status = response.status;
  const retryable = status === 429 || status === 503 || status >= 500;
  const text = message || response.statusText || "request failed";
  return new StreamerError(`${what} refused (${status}): ${text}`, { status, code, retryable, retryAfterMs });
}

/** REST side of the protocol: models, sessions, resume tokens; and `connect()` for a live session. */
export class StreamerClient {
  /**
   * @param {object} options
   * @param {string} [options.baseUrl] the server, e.g. "https://speech.example.com" (default: this page's origin)
   * @param {string|null} [options.apiKey] an API key (server-side apps only; never in a public page)
   * @param {boolean} [options.demo] without an API key, mint sessions with `POST /v1/demo/session`
   */
  constructor({ baseUrl = "", apiKey = null, demo = true } = {}) {
    const origin = globalThis.location?.origin ?? "";
    this.baseUrl = (baseUrl || origin).replace(/\/+$/, "");
    this.apiKey = apiKey;
    this.demo = demo;
  }

  /** `GET /v1/models`: `{asr: {name, multilingual, languages, tasks}, mt: null | {name, sources, targets}}`. */
  async models() {
    const response = await fetch(`${this.baseUrl}/v1/models`, { headers: { Accept: "application/json" } });
    if (!response.ok) throw await errorFromResponse(response, "Model list");
    return response.json();
  }

  /**
   * Mint a session: `{session_id, token, expires_at, ws_url, config, limits}`. The token is single-use
   * and short-lived: open the WebSocket right away (or use `connect()`, which does).
   */
  async createSession(config = {}) {
    let url;
    const init = {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(config ?? {}),
    };
    if (this.apiKey) {
      url = `${this.baseUrl}/v1/sessions`;
      init.headers.Authorization = `Bearer ${this.apiKey}`;
    } else if (this.demo) {
      url = `${this.baseUrl}/v1/demo/session`;
      // The server checks the Origin of demo requests. A page served with `Referrer-Policy: no-referrer`
      // would make the browser send `Origin: null` on this POST; a same-origin policy keeps the real one.
      init.referrerPolicy = "same-origin";
      init.credentials = "same-origin";
    } else {
      throw new StreamerError("No API key and demo mode is off: cannot start a session", { fatal: true });
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (e) {
      throw new StreamerError(`Cannot reach the server at ${this.baseUrl || "this origin"}: ${e.message}`, {
        retryable: true,
      });
    }
    if (response.status !== 201 && response.status !== 200) throw await errorFromResponse(response, "Session");
    return response.json();
  }

  /** A resume token for a dropped session (needs the API key it was started with). */
  async resumeSession(sessionId) {
    if (!this.apiKey) throw new StreamerError("Resuming a session needs an API key", { status: 401 });
    let response;
    try {
      response = await fetch(`${this.baseUrl}/v1/sessions/${encodeURIComponent(sessionId)}/resume`, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.apiKey}`, Accept: "application/json" },
      });
    } catch (e) {
      throw new StreamerError(`Cannot reach the server: ${e.message}`, { retryable: true });
    }
    if (response.status !== 201) throw await errorFromResponse(response, "Resume");
    return response.json();
  }

  /** The absolute WebSocket URL for a session's `ws_url` (relative paths are on this client's host). */
  wsUrl(wsUrl) {
    if (/^wss?:\/\//i.test(wsUrl)) return wsUrl;
    if (/^https?:\/\//i.test(wsUrl)) return wsUrl.replace(/^http/i, "ws");
    const base = new URL(this.baseUrl || globalThis.location.href);
    const scheme = base.protocol === "https:" ? "wss:" : "ws:";
    return new URL(wsUrl, `${scheme}//${base.host}/`).toString();
  }

  /**
   * Start a live session: mints a session, opens its WebSocket and keeps it up (see the module doc).
   * Returns at once; `session.ready` resolves on the first `session.created`.
   */
  connect(config = {}, handlers = {}, options = {}) {
    return new Session(this, config, handlers, options);
  }
}

/** One live stream: audio up, events down, reconnected when the socket drops. */
export class Session {
  constructor(client, config, handlers, options) {
    this.client = client;
    this.config = { ...config };
    this.handlers = handlers ?? {};
    this.options = { ...DEFAULTS, ...options };
    /** connecting | live | reconnecting | closed */
    this.state = "connecting";
    this.sessionId = null;
    this.limits = null;
    this.lastSeq = 0; // seq of the last transcript.final of the current server session
    this._translated = new Set(); // languages of lastSeq's translation.finals received so far
    this._seenSeq = 0; // after a resume: finals up to this seq were delivered before (replays are skipped)
    this._seenTranslations = new Set(); // ...and these translations of final _seenSeq
    this.generation = 0;
    this.offsetMs = 0;
    this.resumed = false;
    /**
     * Hook for resuming: the last resume token used. Resume needs an API key (the server's
     * `POST /v1/sessions/{id}/resume`); demo sessions leave it null and reconnect with a new session.
     */
    this.resumeToken = null;
    this.closedEvent = null;
    this.lastError = null;

    this._ws = null;
    this._attempt = 0;
    this._timer = null;
    this._userClosing = false;
    this._pending = [];
    this._pendingBytes = 0;
    this._timelineMs = 0; // audio sent (or dropped) since the start, across server sessions
    this._sendLog = []; // [end of the sent audio in the server session's time (ms), performance.now()]
    this._resend = []; // [start in the server session's time (ms), duration (ms), piece] after the last final
    this._resendMs = 0;
    this._everLive = false;
    this._closeWaiters = [];
    this._blobs = Promise.resolve(); // a container's Blobs, read in order before they are sent
    this._stream = 0; // which container stream a Blob belongs to (a reconnect starts a new one)

    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    this.ready.catch(() => {}); // reported through onFailure too; awaiting `ready` is optional
    this._open();
  }

  /**
   * Send mono audio at `config.sample_rate` in `config.encoding` (`pcm16`, the default: an Int16Array or
   * ArrayBuffer; `mulaw` / `alaw`: G.711 bytes, a Uint8Array): any whole number of samples per call, as
   * the capture produces them (a call over the session's largest frame is split). With a container
   * encoding: the container's next bytes (a MediaRecorder Blob, an ArrayBuffer), sent in call order.
   */
  sendAudio(data) {
    if (this._userClosing || this.state === "closed") return false;
    const blob = typeof Blob !== "undefined" && data instanceof Blob;
    if (blob || this.contained()) {
      // reading a Blob is asynchronous: every piece of a container waits its turn, so its bytes go out
      // in the order they were recorded
      const stream = this._stream;
      const bytes = blob ? null : toArrayBuffer(data);
      this._blobs = this._blobs
        .then(() => bytes ?? data.arrayBuffer())
        .then((buffer) => {
          if (stream === this._stream && this.state !== "closed") this._sendBuffer(buffer);
        })
        .catch((e) => console.warn("streamer-client: a recorded chunk could not be read", e));
      return this._isLive();
    }
    return this._sendBuffer(toArrayBuffer(data));
  }

  /** Whether `config.encoding` is a container (its bytes are sent as they are, see the module doc). */
  contained() {
    return CONTAINER_ENCODINGS.includes(this.config.encoding);
  }

  _sendBuffer(buffer) {
    if (buffer.byteLength === 0) return false;
    const maxBytes = this.limits?.max_frame_bytes ?? this._bytesFor(1000);
    // A frame over the session's limit would close the socket with 1009: split it instead.
    for (let at = 0; at < buffer.byteLength; at += maxBytes) {
      const piece = at === 0 && buffer.byteLength <= maxBytes ? buffer : buffer.slice(at, at + maxBytes);
      if (this._isLive()) {
        this._sendNow(piece);
      } else {
        this._buffer(piece);
      }
    }
    return this._isLive();
  }

  /** End the current utterance now (`input_audio.commit`). */
  commit() {
    return this._sendJson({ type: "input_audio.commit" });
  }

  /** Change the config (any subset of its fields); also used for later reconnects. */
  update(config) {
    this.config = { ...this.config, ...config };
    return this._sendJson({ type: "session.update", config });
  }

  /**
   * When the audio up to `audioMs` (in the current server session's time, like `audio_end_ms`) left this
   * client, as a `performance.now()` timestamp; null if unknown. `now - audioSentAt(final.audio_end_ms)`
   * is how long a final took after its audio was sent.
   */
  audioSentAt(audioMs) {
    for (const [endMs, at] of this._sendLog) if (endMs >= audioMs) return at;
    return null;
  }

  /** `ping` -> `pong` (the server answers with the same id). */
  ping(id = null) {
    return this._sendJson(id === null ? { type: "ping" } : { type: "ping", id });
  }

  /**
   * No more audio: sends `session.close`, and resolves with the `session.closed` event once the server has
   * delivered the remaining finals (or null if the socket was not open or the server did not answer).
   */
  async close() {
    if (this.state === "closed") return this.closedEvent;
    const done = new Promise((resolve) => this._closeWaiters.push(resolve));
    if (this._userClosing) return done;
    await this._blobs; // a recorder's last chunks are read and sent before session.close
    if (this._userClosing || this.state === "closed") return done;
    this._userClosing = true;
    clearTimeout(this._timer);
    if (this._isLive()) {
      this._flushPending();
      this._sendJson({ type: "session.close" });
      const ws = this._ws;
      const timer = setTimeout(() => ws.close(CloseCode.NORMAL, "client gave up waiting"), this.options.closeTimeoutMs);
      done.finally(() => clearTimeout(timer));
    } else if (this._ws && this._ws.readyState <= WebSocket.OPEN) {
      this._ws.close(CloseCode.NORMAL);
    } else if (this.state === "reconnecting" || !this._connecting) {
      this._setClosed({ reason: "client_closed" });
    }
    // else: a REST call is in flight; _open() sees _userClosing when it returns and ends the session
    return done;
  }

  // --- internals

  _isLive() {
    return this.state === "live" && this._ws !== null && this._ws.readyState === WebSocket.OPEN;
  }

  _sampleRate() {
    return this.config.sample_rate || 16000;
  }

  _sampleBytes() {
    return (this.config.encoding || "pcm16") === "pcm16" ? 2 : 1; // G.711: one byte a sample
  }

  _bytesFor(ms) {
    return Math.floor((this._sampleRate() * ms) / 1000) * this._sampleBytes();
  }

  _msFor(bytes) {
    return (bytes / this._sampleBytes() / this._sampleRate()) * 1000;
  }

  _buffer(piece) {
    this._pending.push(piece);
    this._pendingBytes += piece.byteLength;
    if (this.contained()) return; // a container's bytes are one stream: none may be dropped
    const max = this._bytesFor(this.options.maxBufferMs);
    while (this._pendingBytes > max && this._pending.length > 1) {
      const dropped = this._pending.shift();
      this._pendingBytes -= dropped.byteLength;
      this._timelineMs += this._msFor(dropped.byteLength);
    }
  }

  _sendNow(piece) {
    this._ws.send(piece);
    if (this.contained()) return; // its audio time is the server's to count; nothing is re-sent
    const ms = this._msFor(piece.byteLength);
    this._resend.push([this._timelineMs - this.offsetMs, ms, piece]);
    this._resendMs += ms;
    while (this._resendMs > this.options.maxResendMs && this._resend.length > 1) {
      this._resendMs -= this._resend.shift()[1];
    }
    this._timelineMs += ms;
    this._sendLog.push([this._timelineMs - this.offsetMs, performance.now()]);
    if (this._sendLog.length > 1200) this._sendLog.splice(0, 600);
  }

  /** The server will not need the audio before `ms` (session time): drop the pieces that end by then. */
  _transcribedUntil(ms) {
    while (this._resend.length && this._resend[0][0] + this._resend[0][1] <= ms) {
      this._resendMs -= this._resend.shift()[1];
    }
  }

  /** Where the kept audio starts in session time (the end of what was sent when none is kept). */
  _resendFromMs() {
    return this._resend.length ? this._resend[0][0] : this._timelineMs - this.offsetMs;
  }

  _flushPending() {
    for (const piece of this._pending) this._sendNow(piece);
    this._pending = [];
    this._pendingBytes = 0;
  }

  _sendJson(message) {
    if (!this._isLive()) return false;
    this._ws.send(JSON.stringify(message));
    return true;
  }

  _emit(name, ...args) {
    const fn = this.handlers[name];
    if (typeof fn !== "function") return;
    try {
      fn.apply(this.handlers, args);
    } catch (e) {
      // a bug in a handler must not break the protocol loop; surface it where developers look
      console.error(`streamer-client: handler ${name} threw`, e);
    }
  }

  _setState(state, info = {}) {
    if (this.state === state && state !== "reconnecting") return;
    this.state = state;
    this._emit("onStateChange", state, info);
  }

  _meta() {
    return { sessionId: this.sessionId, generation: this.generation, offsetMs: this.offsetMs, resumed: this.resumed };
  }

  async _open() {
    const first = !this._everLive;
    this._connecting = true;
    let info;
    let url;
    let resumed = false;
    try {
      if (!first && this.client.apiKey && this.sessionId) {
        try {
          info = await this.client.resumeSession(this.sessionId);
          resumed = true;
          this.resumeToken = info.token;
          this._transcribedUntil(Number(info.transcribed_until_ms) || 0);
          const u = new URL(this.client.wsUrl(info.ws_url));
          u.searchParams.set("last_seq", String(this.resumeFrom()));
          if (!this.contained()) u.searchParams.set("audio_from_ms", String(Math.floor(this._resendFromMs())));
          this._seenSeq = this.lastSeq;
          this._seenTranslations = new Set(this._translated);
          url = u.toString();
        } catch (e) {
          if (e.status !== 404) throw e; // the session is gone (window over): start a new one below
        }
      }
      if (!info) {
        info = await this.client.createSession(this.config);
        url = this.client.wsUrl(info.ws_url);
      }
    } catch (e) {
      this._connecting = false;
      this._failed(e instanceof StreamerError ? e : new StreamerError(String(e?.message ?? e), { retryable: true }));
      return;
    }
    this._connecting = false;
    if (this._userClosing) {
      this._setClosed({ reason: "client_closed" });
      return;
    }
    this.limits = info.limits ?? this.limits;
    this._pendingResume = resumed;
    this._connectSocket(url, info.token);
  }

  _connectSocket(url, token) {
    let ws;
    try {
      ws = new WebSocket(url, [SUBPROTOCOL, TOKEN_PREFIX + token]);
    } catch (e) {
      this._failed(new StreamerError(`Cannot open the WebSocket: ${e.message}`, { fatal: true }));
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    let created = false;
    const timer = setTimeout(() => {
      if (!created) ws.close(4000, "no session.created in time");
    }, this.options.connectTimeoutMs);

    ws.onmessage = (msg) => {
      if (typeof msg.data !== "string") return; // the server sends only text frames
      let event;
      try {
        event = JSON.parse(msg.data);
      } catch {
        console.warn("streamer-client: ignoring a frame that is not JSON");
        return;
      }
      if (this._alreadySeen(event)) return; // replayed by a resume, delivered before the drop
      if (event.type === "session.created") {
        created = true;
        clearTimeout(timer);
        this._onCreated(event);
      } else if (event.type === "transcript.final") {
        this.lastSeq = event.seq;
        this._translated = new Set();
        if (typeof event.audio_end_ms === "number") this._transcribedUntil(event.audio_end_ms);
      } else if (event.type === "translation.final" && event.seq === this.lastSeq) {
        this._translated.add(event.language);
      } else if (event.type === "error") {
        this.lastError = event;
      } else if (event.type === "session.closed") {
        this.closedEvent = event;
      }
      const meta = this._meta();
      this._emit("onEvent", event, meta);
      this._emit(handlerName(event.type), event, meta);
    };
    ws.onerror = () => {
      // always followed by a close event, which carries the code
    };
    ws.onclose = (ev) => {
      clearTimeout(timer);
      if (this._ws === ws) this._ws = null;
      this._onSocketClosed(ev, created);
    };
  }

  /**
   * The `last_seq` to resume with: one less while the last final's translations (one per
   * `config.translate_to` language) have not all arrived, so the server replays them.
   */
  resumeFrom() {
    const targets = this.config.translate_to ?? [];
    const missing = targets.some((language) => !this._translated.has(language));
    return this.lastSeq > 0 && missing ? this.lastSeq - 1 : this.lastSeq;
  }

  _alreadySeen(event) {
    if (typeof event.seq !== "number" || event.seq > this._seenSeq) return false;
    if (event.type === "translation.final" && event.seq === this._seenSeq) {
      return this._seenTranslations.has(event.language);
    }
    return event.type === "transcript.final" || event.type === "translation.final";
  }

  _onCreated(event) {
    const resumed = Boolean(event.resumed) || this._pendingResume;
    if (!resumed) {
      // a new server session: its seq and audio times restart at zero, after the audio already consumed
      this.generation += 1;
      this.offsetMs = this._timelineMs;
      this.lastSeq = 0;
      this._translated = new Set();
      this._seenSeq = 0;
      this._seenTranslations = new Set();
      this._sendLog = [];
      this._resend = [];
      this._resendMs = 0;
    }
    this.resumed = resumed;
    this.sessionId = event.session_id;
    this.limits = event.limits ?? this.limits;
    this._attempt = 0;
    const wasLive = this._everLive;
    this._everLive = true;
    if (wasLive && this.contained()) {
      // the new connection starts a new container stream: the old one's tail would not decode
      this._stream += 1;
      this._pending = [];
      this._pendingBytes = 0;
    }
    this.lastError = null;
    this._setState("live", { sessionId: this.sessionId, resumed, reconnected: wasLive });
    if (resumed) {
      // the audio after the last final, again: the server skips what it had transcribed already
      for (const [, , piece] of this._resend) this._ws.send(piece);
    }
    this._flushPending();
    this._resolveReady(event);
  }

  _onSocketClosed(ev, created) {
    const code = ev.code;
    const serverMessage = this.lastError?.message;
    if (this._userClosing || code === CloseCode.NORMAL) {
      this._setClosed(this.closedEvent ?? { reason: "client_closed", code });
      return;
    }
    const message = serverMessage ? `${describeClose(code)} ${serverMessage}` : describeClose(code, ev.reason);
    const fatal = code === CloseCode.POLICY || code === CloseCode.TOO_LARGE;
    const error = new StreamerError(message, {
      code: this.lastError?.code ?? null,
      closeCode: code,
      retryable: !fatal,
      fatal,
    });
    if (!created && !this._everLive) {
      // the first connection never came up (e.g. a refused upgrade): nothing to reconnect to
      error.message = `Could not open the stream: ${describeClose(code, ev.reason)}`;
      error.fatal = true;
    }
    this._failed(error);
  }

  /** Report a failure, then reconnect with backoff or give up. */
  _failed(error) {
    const canRetry = this._everLive && !error.fatal && (error.retryable || error.status === null);
    if (!canRetry || this._userClosing || this._attempt >= this.options.maxReconnectAttempts) {
      if (canRetry && this._attempt >= this.options.maxReconnectAttempts) {
        error.message = `${error.message} Gave up after ${this._attempt} reconnect attempts.`;
      }
      error.fatal = true;
      this._emit("onFailure", error);
      this._rejectReady(error);
      this._setClosed({ reason: "failed", error });
      return;
    }
    this._emit("onFailure", error);
    const { backoffBaseMs, backoffMaxMs } = this.options;
    let delay = Math.min(backoffMaxMs, backoffBaseMs * 2 ** this._attempt) * (0.5 + Math.random() / 2);
    if (error.closeCode === CloseCode.TRY_AGAIN_LATER) delay = Math.max(delay, 2000);
    if (error.retryAfterMs) delay = Math.max(delay, error.retryAfterMs);
    this._attempt += 1;
    this._setState("reconnecting", { attempt: this._attempt, delayMs: Math.round(delay), error });
    this._timer = setTimeout(() => {
      if (!this._userClosing) this._open();
    }, delay);
  }

  _setClosed(info) {
    clearTimeout(this._timer);
    this._pending = [];
    this._pendingBytes = 0;
    this._setState("closed", info);
    const waiters = this._closeWaiters;
    this._closeWaiters = [];
    for (const resolve of waiters) resolve(this.closedEvent);
  }
}
