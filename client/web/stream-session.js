// One streaming session over a websocket that loses no word, whatever happens to the server
// (docs/protocol.md, "Resuming a dropped session" and "When the server is gone"). The same rule
// as the Python client (client/ledger.py):
//
// - audio messages are numbered and kept until they are final-safe: the server says so in
//   input_audio.ack (final_safe_seq), or a final received covers them;
// - a dropped connection resumes the session, and what the server did not get goes again;
// - when the session is gone (resume_failed: the server was restarted, or a load balancer sent
//   us elsewhere) or was closed for a shutdown, a new session with the same options takes over
//   from the last final received. Its events are rewritten so the page sees one stream:
//   utterance ids and times continue, and no final comes twice.

const FATAL_CODES = new Set([
  "missing_api_key", "invalid_api_key", "token_expired", "origin_not_allowed",
  "invalid_session", "unsupported_sample_rate", "model_not_found", "too_many_sessions",
  "audio_rate_exceeded",
]);
const MAX_KEPT_MESSAGES = 18000; // 30 minutes of 100 ms messages

export class AudioLedger {
  constructor(sampleRate) {
    this.sampleRate = sampleRate;
    this.chunks = []; // {seq, buffer, startMs, endMs}, not yet final-safe
    this.sentMs = 0;
    this.lastSeq = 0;
    this.epoch = 0;
    this.epochFirstSeq = 1; // the global seq of this session's message 1
    this.epochOffsetMs = 0; // where this session's stream time 0 lies
    this.lastFinalId = 0; // this session's highest utterance id received (for a resume)
    this.idOffset = 0;
    this.maxUtteranceId = 0;
    this.finalizedMs = 0;
    this.seen = new Set();
  }

  add(buffer) {
    const durationMs = (buffer.byteLength / 2 / this.sampleRate) * 1000;
    this.lastSeq += 1;
    const chunk = { seq: this.lastSeq, buffer, startMs: this.sentMs, endMs: this.sentMs + durationMs };
    this.sentMs = chunk.endMs;
    this.chunks.push(chunk);
    if (this.chunks.length > MAX_KEPT_MESSAGES) this.chunks.shift();
    return chunk;
  }

  fromSeq(seq) {
    return this.chunks.filter((chunk) => chunk.seq >= seq);
  }

  globalSeq(epochSeq) {
    return this.epochFirstSeq + epochSeq - 1;
  }

  // The event as the page should see it, or null for a final seen before.
  receive(event) {
    if (event.type === "input_audio.ack") {
      this.forgetThrough(this.globalSeq(event.final_safe_seq ?? event.seq));
      return event;
    }
    event = this.rewritten(event);
    const outcome = event.type === "transcript.final" || (event.type === "error" && event.utterance_id);
    if (outcome) {
      const key = `${this.epoch}:${event.utterance_id}:${Boolean(event.retried)}`;
      if (this.seen.has(key)) return null;
      this.seen.add(key);
      this.lastFinalId = Math.max(this.lastFinalId, event.utterance_id - this.idOffset);
      if (event.type === "transcript.final" && typeof event.end_ms === "number") {
        this.finalizedMs = Math.max(this.finalizedMs, event.end_ms);
        this.forgetBefore(this.finalizedMs);
      }
    }
    return event;
  }

  rewritten(event) {
    if (this.epoch > 0) {
      event = { ...event };
      if (typeof event.utterance_id === "number") event.utterance_id += this.idOffset;
      for (const field of ["start_ms", "end_ms"]) {
        if (typeof event[field] === "number") event[field] = Math.round(event[field] + this.epochOffsetMs);
      }
    }
    if (typeof event.utterance_id === "number") {
      this.maxUtteranceId = Math.max(this.maxUtteranceId, event.utterance_id);
    }
    return event;
  }

  // The server lost the session (or closed it after global afterSeq): the next session starts
  // with the first chunk no received final covers. Returns its seq.
  startEpoch(afterSeq = null) {
    if (afterSeq !== null) this.forgetThrough(afterSeq);
    this.forgetBefore(this.finalizedMs);
    if (this.chunks.length && this.chunks[0].startMs < this.finalizedMs) {
      // The new session starts exactly where the last final ended: the tail of that utterance,
      // sent again, could be heard as a word of its own.
      const chunk = this.chunks[0];
      const samples = Math.floor(((this.finalizedMs - chunk.startMs) * this.sampleRate) / 1000);
      this.chunks[0] = {
        ...chunk,
        buffer: chunk.buffer.slice(samples * 2),
        startMs: chunk.startMs + (samples / this.sampleRate) * 1000,
      };
    }
    const first = this.chunks[0];
    this.epoch += 1;
    this.epochFirstSeq = first ? first.seq : this.lastSeq + 1;
    this.epochOffsetMs = first ? first.startMs : this.sentMs;
    this.idOffset = this.maxUtteranceId;
    this.lastFinalId = 0;
    return this.epochFirstSeq;
  }

  forgetThrough(seq) {
    while (this.chunks.length && this.chunks[0].seq <= seq) this.chunks.shift();
  }

  forgetBefore(positionMs) {
    while (this.chunks.length && this.chunks[0].endMs <= positionMs) this.chunks.shift();
  }
}

export class StreamSession {
  // renewToken: optional async () => token, asked before a new session replaces a lost one
  // (the first token may have expired by then).
  constructor({ url, query, onEvent, onStatus, renewToken = null }) {
    this.url = url;
    this.query = query; // session options and, if needed, the token
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.renewToken = renewToken;
    this.ledger = new AudioLedger(Number(query.sample_rate || 16000));
    this.sessionId = null;
    this.resumeToken = null;
    this.resumable = false; // a session exists that a reconnect may resume
    this.nextSeq = 1; // the next message this connection has to send
    this.ready = false; // the server knows where we stand: audio may flow
    this.closing = false;
    this.closeSent = false;
    this.closed = false;
    this.fatal = false;
    this.attempt = 0;
    this.socket = null;
  }

  start() {
    this.connect();
  }

  sendAudio(buffer) {
    if (this.closing) return;
    this.ledger.add(buffer);
    if (this.ready) this.flush();
  }

  close() {
    this.closing = true;
    if (this.ready) this.flush();
  }

  abandon() {
    this.closed = true;
    if (this.socket) this.socket.close(1000, "client left");
  }

  flush() {
    for (const chunk of this.ledger.fromSeq(this.nextSeq)) {
      this.socket.send(chunk.buffer);
      this.nextSeq = chunk.seq + 1;
    }
    if (this.closing && !this.closeSent && this.nextSeq > this.ledger.lastSeq) {
      this.socket.send(JSON.stringify({ type: "session.close" }));
      this.closeSent = true;
    }
  }

  async connect() {
    if (!this.resumable && this.sessionId !== null && this.renewToken) {
      try {
        this.query = { ...this.query, token: await this.renewToken() };
      } catch (error) {
        this.onStatus("connecting", `Cannot renew the token: ${error.message}`);
      }
    }
    const params = new URLSearchParams(
      this.resumable
        ? {
            session_id: this.sessionId,
            resume_token: this.resumeToken,
            last_final_id: String(this.ledger.lastFinalId),
            ...(this.query.token ? { token: this.query.token } : {}),
          }
        : this.query,
    );
    let socket;
    try {
      socket = new WebSocket(`${this.url}?${params}`);
    } catch (error) {
      this.onStatus("error", `Cannot open the connection: ${error.message}`);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.ready = false;
    this.closeSent = false;
    this.onStatus("connecting", this.sessionId ? "Reconnecting…" : "Connecting…");
    socket.onmessage = (message) => this.receive(JSON.parse(message.data));
    socket.onclose = (event) => this.lost(socket, event);
  }

  receive(event) {
    switch (event.type) {
      case "session.created":
        if (this.sessionId !== null) event = { ...event, continues: this.sessionId };
        this.sessionId = event.session_id;
        this.resumeToken = event.resume_token;
        this.resumable = true;
        this.becomeReady(this.ledger.epochFirstSeq);
        break;
      case "session.resumed":
        this.becomeReady(this.ledger.globalSeq(event.last_audio_seq + 1));
        break;
      case "session.closed":
        if (event.reason === "server_shutdown" && this.moreToSay(event)) {
          this.loseSession(this.ledger.globalSeq(event.last_audio_seq ?? 0));
          return;
        }
        this.closed = true;
        break;
      case "error":
        if (event.code === "resume_failed") {
          this.loseSession(null); // the server no longer has it: a new session takes over
          return;
        }
        if (FATAL_CODES.has(event.code)) this.fatal = true;
        break;
    }
    const seen = this.ledger.receive(event);
    if (seen !== null) this.onEvent(seen);
  }

  moreToSay(closed) {
    return !this.closing || this.ledger.globalSeq(closed.last_audio_seq ?? 0) < this.ledger.lastSeq;
  }

  loseSession(afterSeq) {
    this.resumable = false;
    this.ledger.startEpoch(afterSeq);
    this.attempt = 0;
  }

  becomeReady(firstSeq) {
    this.attempt = 0;
    this.ready = true;
    this.nextSeq = firstSeq;
    this.onStatus("live", "Connected");
    this.flush();
  }

  lost(socket, event) {
    if (socket !== this.socket) return;
    this.ready = false;
    if (this.closed) {
      this.onStatus("closed", "Session closed");
      return;
    }
    if (this.fatal) {
      this.onStatus("error", event.reason || "The server refused the session");
      return;
    }
    const delayMs = this.attempt === 0 && !this.resumable ? 0 : Math.min(500 * 2 ** this.attempt, 8000);
    this.attempt += 1;
    const why = this.sessionId ? "Connection lost" : "Cannot reach the server";
    this.onStatus("connecting", `${why}; retrying in ${Math.round(delayMs / 1000)} s…`);
    setTimeout(() => this.connect(), delayMs);
  }
}
