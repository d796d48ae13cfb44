// One streaming session over a websocket that survives dropped connections: audio messages are
// numbered as they are sent, kept until the server acknowledges them (input_audio.ack), and on
// reconnect the session is resumed (docs/protocol.md, "Resuming a dropped session"): what the
// server did not get is sent again, and the finals missed meanwhile arrive once.

const FATAL_CODES = new Set([
  "missing_api_key", "invalid_api_key", "token_expired", "origin_not_allowed", "resume_failed",
  "invalid_session", "unsupported_sample_rate", "model_not_found", "too_many_sessions",
  "audio_rate_exceeded",
]);
const MAX_PENDING_MESSAGES = 18000; // 30 minutes of 100 ms messages

export class StreamSession {
  constructor({ url, query, onEvent, onStatus }) {
    this.url = url;
    this.query = query; // session options and, if needed, the token
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.sessionId = null;
    this.resumeToken = null;
    this.lastFinalId = 0;
    this.sentSeq = 0; // audio messages numbered so far
    this.pending = []; // [seq, ArrayBuffer] not yet acknowledged
    this.ready = false; // the server knows where we stand: audio may flow
    this.closing = false;
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
    this.sentSeq += 1;
    this.pending.push([this.sentSeq, buffer]);
    if (this.pending.length > MAX_PENDING_MESSAGES) this.pending.shift();
    if (this.ready) this.socket.send(buffer);
  }

  close() {
    this.closing = true;
    if (this.ready) this.socket.send(JSON.stringify({ type: "session.close" }));
  }

  abandon() {
    this.closed = true;
    if (this.socket) this.socket.close(1000, "client left");
  }

  connect() {
    const params = new URLSearchParams(
      this.sessionId === null
        ? this.query
        : {
            session_id: this.sessionId,
            resume_token: this.resumeToken,
            last_final_id: String(this.lastFinalId),
            ...(this.query.token ? { token: this.query.token } : {}),
          },
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
    this.onStatus("connecting", this.sessionId ? "Reconnecting…" : "Connecting…");
    socket.onmessage = (message) => this.receive(JSON.parse(message.data));
    socket.onclose = (event) => this.lost(socket, event);
  }

  receive(event) {
    switch (event.type) {
      case "session.created":
        this.sessionId = event.session_id;
        this.resumeToken = event.resume_token;
        this.becomeReady(0);
        break;
      case "session.resumed":
        this.becomeReady(event.last_audio_seq);
        break;
      case "input_audio.ack":
        while (this.pending.length && this.pending[0][0] <= event.seq) this.pending.shift();
        return;
      case "transcript.final":
        this.lastFinalId = Math.max(this.lastFinalId, event.utterance_id);
        break;
      case "session.closed":
        this.closed = true;
        break;
      case "error":
        if (event.utterance_id) this.lastFinalId = Math.max(this.lastFinalId, event.utterance_id);
        if (FATAL_CODES.has(event.code)) this.fatal = true;
        break;
    }
    this.onEvent(event);
  }

  becomeReady(lastProcessedSeq) {
    this.attempt = 0;
    this.ready = true;
    this.onStatus("live", "Connected");
    for (const [seq, buffer] of this.pending) {
      if (seq > lastProcessedSeq) this.socket.send(buffer);
    }
    if (this.closing) this.socket.send(JSON.stringify({ type: "session.close" }));
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
    this.attempt += 1;
    const delayMs = Math.min(500 * 2 ** (this.attempt - 1), 8000);
    const why = this.sessionId ? "Connection lost" : "Cannot reach the server";
    this.onStatus("connecting", `${why}; retrying in ${Math.round(delayMs / 1000)} s…`);
    setTimeout(() => this.connect(), delayMs);
  }
}
