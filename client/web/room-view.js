// A room's shared transcript: every speaker's finals, labelled and coloured, placed by their
// start on the room clock (room_start_ms, then speaker, session and utterance: the order the
// server documents), each once; the speakers' current partials below them.

const COLORS = ["#1f6feb", "#c2410c", "#15803d", "#9333ea", "#b91c1c", "#0e7490", "#a16207", "#be185d"];

export function clock(ms) {
  const seconds = Math.floor(ms / 1000);
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${String(seconds % 60).padStart(2, "0")}`;
}

function order(a, b) {
  return (
    a.room_start_ms - b.room_start_ms ||
    a.speaker.localeCompare(b.speaker) ||
    a.session_id.localeCompare(b.session_id) ||
    a.utterance_id - b.utterance_id
  );
}

export class RoomView {
  constructor(container) {
    this.container = container;
    this.finals = new Map(); // "session/utterance" -> final event
    this.colors = new Map(); // speaker -> colour, in order of appearance
    this.partials = document.createElement("div");
    this.partials.className = "room-partials";
    this.container.append(this.partials);
  }

  get orderedFinals() {
    return [...this.finals.values()].sort(order);
  }

  color(speaker) {
    if (!this.colors.has(speaker)) this.colors.set(speaker, COLORS[this.colors.size % COLORS.length]);
    return this.colors.get(speaker);
  }

  line(event, className) {
    const line = document.createElement("div");
    line.className = className;
    line.dataset.speaker = event.speaker;
    line.style.setProperty("--speaker-color", this.color(event.speaker));
    const time = document.createElement("time");
    time.textContent = clock(event.room_start_ms);
    const speaker = document.createElement("b");
    speaker.className = "speaker";
    speaker.textContent = event.speaker;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = event.text;
    line.append(time, " ", speaker, " ", text);
    return line;
  }

  showPartial(event) {
    const key = `${event.session_id}/${event.utterance_id}`;
    if (this.finals.has(key)) return;
    let line = this.partials.querySelector(`[data-session="${CSS.escape(event.session_id)}"]`);
    if (!line) {
      line = this.line(event, "room-partial");
      line.dataset.session = event.session_id;
      this.partials.append(line);
    }
    line.dataset.key = key;
    line.querySelector(".text").textContent = event.text;
    this.scroll();
  }

  addFinal(event) {
    const key = `${event.session_id}/${event.utterance_id}`;
    if (this.finals.has(key)) return; // each final once, however often it is sent
    this.finals.set(key, event);
    this.partials.querySelector(`[data-key="${CSS.escape(key)}"]`)?.remove();
    if (!event.text) return;
    const line = this.line(event, "room-final");
    line.dataset.key = key;
    const later = [...this.container.querySelectorAll(".room-final")].find(
      (element) => order(this.finals.get(element.dataset.key), event) > 0,
    );
    this.container.insertBefore(line, later ?? this.partials);
    this.scroll();
  }

  clear() {
    this.finals.clear();
    this.container.querySelectorAll(".room-final").forEach((element) => element.remove());
    this.partials.replaceChildren();
  }

  scroll() {
    this.container.scrollTop = this.container.scrollHeight;
  }
}

// Follow a room: every final so far, then live events; reconnect when dropped.
export function followRoom({ roomId, watchToken, view, onStatus }) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const params = new URLSearchParams({ watch_token: watchToken, partials: "true" });
  let attempt = 0;
  let ended = false;
  let socket = null;
  function connect() {
    socket = new WebSocket(`${scheme}://${location.host}/v1/rooms/${roomId}/watch?${params}`);
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "room.started") {
        attempt = 0;
        onStatus("live", `Room “${event.name}”`);
      } else if (event.type === "transcript.partial") {
        view.showPartial(event);
      } else if (event.type === "transcript.final") {
        view.addFinal(event);
      } else if (event.type === "room.closed") {
        ended = true;
        onStatus("closed", "The room has ended.");
      } else if (event.type === "error") {
        ended = true;
        onStatus("error", event.message);
      }
    };
    socket.onclose = () => {
      if (ended) return;
      attempt += 1;
      const delayMs = Math.min(500 * 2 ** (attempt - 1), 8000);
      onStatus("connecting", `Connection lost; retrying in ${Math.round(delayMs / 1000)} s…`);
      setTimeout(connect, delayMs);
    };
  }
  connect();
  return { stop: () => { ended = true; socket?.close(); } };
}
