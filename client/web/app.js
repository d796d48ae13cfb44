// The capture page: microphone -> StreamSession -> live captions, downloads and sharing.

import { Microphone, describeMicrophoneError, listMicrophones } from "./capture.js";
import { StreamSession } from "./stream-session.js";
import { toSrt, toText, toVtt } from "./subtitles.js";
import { TranscriptView } from "./transcript.js";

const $ = (selector) => document.querySelector(selector);
const view = new TranscriptView($("#transcript"));
const pageParams = new URLSearchParams(location.search);
let session = null;
let microphone = null;

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

function onEvent(event) {
  switch (event.type) {
    case "session.created": {
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
  if (credential) query.token = credential;
  session = new StreamSession({
    url: wsUrl("/v1/stream"),
    query,
    onEvent,
    onStatus: setStatus,
    renewToken: credential ? token : null,
  });
  microphone = new Microphone((chunk) => session.sendAudio(chunk));
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
  $("#start").disabled = false;
  $("#stop").disabled = true;
}

async function stop() {
  await stopCapture();
  session?.close();
}

function download(kind) {
  const finals = view.orderedFinals;
  const [text, type] = {
    srt: [toSrt(finals), "application/x-subrip"],
    vtt: [toVtt(finals), "text/vtt"],
    txt: [toText(finals), "text/plain"],
  }[kind];
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
