// A read-only viewer of a meeting room: /rooms/{room_id}?watch_token=...
// Every speaker's finals, labelled and coloured, in the order they were spoken.

import { RoomView, followRoom } from "./room-view.js";

const $ = (selector) => document.querySelector(selector);

function setStatus(state, text) {
  $("#status").dataset.state = state;
  $("#status").textContent = text;
}

followRoom({
  roomId: location.pathname.split("/").filter(Boolean).pop(),
  watchToken: new URLSearchParams(location.search).get("watch_token") ?? "",
  view: new RoomView($("#transcript")),
  onStatus: setStatus,
});
$("#captions").addEventListener("click", () => document.body.classList.toggle("caption-view"));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") document.body.classList.remove("caption-view");
});
