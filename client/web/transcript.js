// The transcript on screen: finals in black (one element each, in utterance order, never
// duplicated, after the time their speech started), the current partial in grey after them.
// Used by the capture and watch pages.

import { clock } from "./room-view.js";

export class TranscriptView {
  constructor(container) {
    this.container = container;
    this.finals = new Map(); // utterance_id -> final event
    this.partial = document.createElement("span");
    this.partial.className = "partial";
    this.container.append(this.partial);
  }

  get orderedFinals() {
    return [...this.finals.values()].sort((a, b) => a.utterance_id - b.utterance_id);
  }

  showPartial(event) {
    this.partial.textContent = event.text;
    this.partial.dataset.utteranceId = String(event.utterance_id);
    this.scroll();
  }

  addFinal(event) {
    if (this.finals.has(event.utterance_id)) return; // finals are idempotent by id
    this.finals.set(event.utterance_id, event);
    if (this.partial.dataset.utteranceId === String(event.utterance_id)) {
      this.partial.textContent = "";
    }
    if (!event.text) return;
    const line = document.createElement("span");
    line.className = "final";
    line.dataset.utteranceId = String(event.utterance_id);
    line.textContent = event.text + " ";
    const later = [...this.container.querySelectorAll(".final")].find(
      (element) => Number(element.dataset.utteranceId) > event.utterance_id,
    );
    const stamp = document.createElement("time");
    stamp.className = "stamp";
    stamp.textContent = clock(event.start_ms ?? 0);
    this.container.insertBefore(line, later?.previousElementSibling ?? later ?? this.partial);
    this.container.insertBefore(stamp, line);
    this.scroll();
  }

  clear() {
    this.finals.clear();
    this.container.querySelectorAll(".final, .stamp").forEach((element) => element.remove());
    this.partial.textContent = "";
  }

  scroll() {
    this.container.scrollTop = this.container.scrollHeight;
  }
}
