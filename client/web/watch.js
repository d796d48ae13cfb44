// A read-only viewer of someone else's session: /watch/{session_id}?watch_token=...
// A late joiner first gets every final so far, then follows live; it reconnects if dropped.

import { TranscriptView } from "./transcript.js";

const $ = (selector) => document.querySelector(selector);
const view = new TranscriptView($("#transcript"));
const sessionId = location.pathname.split("/").filter(Boolean).pop();
const watchToken = new URLSearchParams(location.search).get("watch_token") ?? "";
let attempt = 0;

function setStatus(state, text) {
  $("#status").dataset.state = state;
  $("#status").textContent = text;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const params = new URLSearchParams({ watch_token: watchToken });
  const socket = new WebSocket(`${scheme}://${location.host}/v1/watch/${sessionId}?${params}`);
  let ended = false;
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "watch.started") {
      attempt = 0;
      setStatus("live", "Live");
    } else if (event.type === "transcript.partial") {
      view.showPartial(event);
    } else if (event.type === "transcript.final") {
      view.addFinal(event);
    } else if (event.type === "session.closed") {
      ended = true;
      setStatus("closed", "The session has ended.");
    } else if (event.type === "error") {
      ended = true;
      setStatus("error", event.message);
    }
  };
  socket.onclose = () => {
    if (ended) return;
    attempt += 1;
    const delayMs = Math.min(500 * 2 ** (attempt - 1), 8000);
    setStatus("connecting", `Connection lost; retrying in ${Math.round(delayMs / 1000)} s…`);
    setTimeout(connect, delayMs);
  };
}

$("#captions").addEventListener("click", () => document.body.classList.toggle("caption-view"));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") document.body.classList.remove("caption-view");
});
$("main").addEventListener("dblclick", () => document.body.classList.remove("caption-view"));
connect();
