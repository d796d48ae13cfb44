// The capture page: microphone -> StreamSession -> live captions, downloads and sharing; in a
// meeting room, the room's shared transcript of every speaker instead of one's own.

import { Microphone, describeMicrophoneError, listMicrophones } from "./capture.js";
import { RoomView, followRoom } from "./room-view.js";
import { StreamSession } from "./stream-session.js";
import { toSrt, toText, toVtt } from "./subtitles.js";
import { TranscriptView } from "./transcript.js";

const $ = (selector) => document.querySelector(selector);
let view = new TranscriptView($("#transcript"));
const pageParams = new URLSearchParams(location.search);
let session = null;
let microphone = null;
// The room this page speaks in: from an invite link (?room_id=&join_token=&watch_token=), or
// made with "New room".
let room = pageParams.get("room_id")
  ? {
      room_id: pageParams.get("room_id"),
      join_token: pageParams.get("join_token") ?? "",
      watch_token: pageParams.get("watch_token") ?? "",
      name: pageParams.get("room_name") ?? "",
    }
  : null;

function wsUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

function setStatus(state, text) {
  const status = $("#status");
  status.dataset.state = state;
  status.textContent = text;
  if (state === "error" || state === "closed") stopCapture();
}

function showError(text) {
  setStatus("error", text);
}

async function token() {
  if (pageParams.get("token")) return pageParams.get("token");
  const key = $("#api-key").value.trim();
  if (!key) return null;
  const response = await fetch("/v1/realtime/client_secrets", {
    method: "POST",
    headers: { Authorization: `Bearer ${key}` },
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error?.message ?? `the server refused the key (${response.status})`);
  }
  return (await response.json()).value;
}

function apiHeaders() {
  const key = $("#api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function newRoom() {
  const name = $("#new-room-name").value.trim() || "Meeting";
  const response = await fetch("/v1/rooms", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...apiHeaders() },
    body: JSON.stringify({ name }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    $("#notice").textContent = body.error?.message ?? `the server refused (${response.status})`;
    return;
  }
  enterRoom(body);
}

function enterRoom(joined) {
  room = joined;
  const invite = new URL("/", location.href);
  for (const key of ["room_id", "join_token", "watch_token"]) invite.searchParams.set(key, room[key]);
  invite.searchParams.set("room_name", room.name);
  history.replaceState(null, "", invite.search);
  const watch = new URL(`/rooms/${room.room_id}`, location.href);
  watch.searchParams.set("watch_token", room.watch_token);
  $("#room-name").textContent = room.name || room.room_id;
  $("#room-invite").href = invite.href;
  $("#room-watch").href = watch.href;
  $("#room-bar").hidden = false;
  $("#new-room").disabled = true;
  $("#transcript").replaceChildren();
  $("#transcript").classList.add("room");
  view = new RoomView($("#transcript"));
  followRoom({
    roomId: room.room_id,
    watchToken: room.watch_token,
    view,
    onStatus: (state, text) => {
      if (!microphone) setStatus(state, text);
    },
  });
}

function showLevel(chunk) {
  // Loudness of the last 100 ms, so a speaker sees the microphone works before any text.
  const samples = new Int16Array(chunk);
  let sum = 0;
  for (const sample of samples) sum += sample * sample;
  const rms = Math.sqrt(sum / Math.max(1, samples.length)) / 32768;
  $("#level").value = Math.min(1, rms * 4);
}

function onEvent(event) {
  if (room && event.type.startsWith("transcript.")) return; // shown from the room's feed
  switch (event.type) {
    case "session.created": {
      if (room) break; // the room's viewer link is the share link
      const share = new URL(`/watch/${event.session_id}`, location.href);
      share.searchParams.set("watch_token", event.watch_token);
      $("#share").href = share.href;
      $("#share").hidden = false;
      break;
    }
    case "transcript.partial":
      view.showPartial(event);
      break;
    case "transcript.final":
      view.addFinal(event);
      break;
    case "error":
      $("#notice").textContent = `${event.code}: ${event.message}`;
      break;
    case "session.degraded":
      // The server is short of compute: live text comes less often (or only at pauses), the
      // final text of each sentence still comes.
      $("#notice").textContent =
        event.partials === "paused"
          ? "The server is busy: text appears when you pause."
          : "The server is busy: live text updates less often.";
      break;
    case "session.recovered":
      $("#notice").textContent = "";
      break;
  }
}

async function start() {
  $("#start").disabled = true;
  $("#notice").textContent = "";
  view.clear();
  let credential = null;
  try {
    credential = await token();
  } catch (error) {
    showError(`Cannot get a token: ${error.message}`);
    $("#start").disabled = false;
    return;
  }
  const query = { sample_rate: "16000" };
  if ($("#language").value) query.language = $("#language").value;
  if (room) {
    const speaker = $("#speaker").value.trim();
    if (!speaker) {
      showError("Enter your name to speak in the room.");
      $("#start").disabled = false;
      return;
    }
    Object.assign(query, { room_id: room.room_id, join_token: room.join_token, speaker });
  }
  if (credential) query.token = credential;
  session = new StreamSession({
    url: wsUrl("/v1/stream"),
    query,
    onEvent,
    onStatus: setStatus,
    renewToken: credential ? token : null,
  });
  microphone = new Microphone((chunk) => {
    showLevel(chunk);
    session.sendAudio(chunk);
  });
  try {
    await microphone.start($("#microphone").value);
  } catch (error) {
    microphone = null;
    showError(describeMicrophoneError(error));
    $("#start").disabled = false;
    return;
  }
  session.start();
  $("#stop").disabled = false;
  refreshMicrophones();
}

async function stopCapture() {
  const running = microphone;
  microphone = null;
  if (running) await running.stop();
  $("#level").value = 0;
  $("#start").disabled = false;
  $("#stop").disabled = true;
}

async function stop() {
  await stopCapture();
  session?.close();
}

async function roomTranscript(kind) {
  // The whole meeting, as the server keeps it (speakers labelled, WebVTT voice spans).
  const params = new URLSearchParams({ format: kind, watch_token: room.watch_token });
  const response = await fetch(`/v1/rooms/${room.room_id}/transcript?${params}`);
  return response.text();
}

async function download(kind) {
  const finals = view.orderedFinals;
  const type = { srt: "application/x-subrip", vtt: "text/vtt", txt: "text/plain" }[kind];
  const text = room
    ? await roomTranscript(kind)
    : { srt: toSrt, vtt: toVtt, txt: toText }[kind](finals);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = `transcript.${kind}`;
  link.click();
  URL.revokeObjectURL(link.href);
}

async function refreshMicrophones() {
  try {
    const select = $("#microphone");
    const chosen = select.value;
    const microphones = await listMicrophones();
    select.replaceChildren(
      new Option("Default microphone", ""),
      ...microphones.map((mic, index) => new Option(mic.label || `Microphone ${index + 1}`, mic.deviceId)),
    );
    select.value = chosen;
  } catch {
    // Listing needs permission in some browsers; the default microphone still works.
  }
}

$("#start").addEventListener("click", start);
$("#new-room").addEventListener("click", newRoom);
$("#stop").addEventListener("click", stop);
$("#download-srt").addEventListener("click", () => download("srt"));
$("#download-vtt").addEventListener("click", () => download("vtt"));
$("#download-txt").addEventListener("click", () => download("txt"));
$("#copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(toText(view.orderedFinals));
    $("#notice").textContent = "Copied.";
  } catch (error) {
    $("#notice").textContent = `Cannot copy: ${error.message}`;
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") document.body.classList.remove("caption-view");
});
$("main").addEventListener("dblclick", () => document.body.classList.remove("caption-view"));
$("#captions").addEventListener("click", () => {
  document.body.classList.toggle("caption-view");
  if (document.body.classList.contains("caption-view")) {
    document.documentElement.requestFullscreen?.().catch(() => {});
  } else if (document.fullscreenElement) {
    document.exitFullscreen();
  }
});
window.addEventListener("beforeunload", () => session?.abandon());
refreshMicrophones();
if (room) enterRoom(room);
