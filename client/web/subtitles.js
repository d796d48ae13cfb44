// Finals -> SRT, WebVTT and plain text. Pure functions, shared by the capture and watch pages.

function pad(value, width) {
  return String(value).padStart(width, "0");
}

export function timestamp(ms, separator) {
  const total = Math.max(0, Math.round(ms));
  const hours = Math.floor(total / 3600000);
  const minutes = Math.floor((total % 3600000) / 60000);
  const seconds = Math.floor((total % 60000) / 1000);
  return `${pad(hours, 2)}:${pad(minutes, 2)}:${pad(seconds, 2)}${separator}${pad(total % 1000, 3)}`;
}

function cues(finals) {
  return finals.filter((final) => final.text && final.text.trim());
}

export function toSrt(finals) {
  return cues(finals)
    .map((final, index) =>
      `${index + 1}\n${timestamp(final.start_ms, ",")} --> ${timestamp(final.end_ms, ",")}\n` +
      `${final.text.trim()}\n`)
    .join("\n");
}

export function toVtt(finals) {
  const body = cues(finals)
    .map((final) =>
      `${timestamp(final.start_ms, ".")} --> ${timestamp(final.end_ms, ".")}\n${final.text.trim()}\n`)
    .join("\n");
  return `WEBVTT\n\n${body}`;
}

export function toText(finals) {
  return cues(finals).map((final) => final.text.trim()).join("\n") + "\n";
}
