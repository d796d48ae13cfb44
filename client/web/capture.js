// The microphone as a stream of 100 ms, 16 kHz PCM16 messages (see pcm-worklet.js).

export async function listMicrophones() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices.filter((device) => device.kind === "audioinput");
}

export class Microphone {
  constructor(onChunk) {
    this.onChunk = onChunk;
    this.context = null;
    this.stream = null;
    this.node = null;
  }

  async start(deviceId) {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new Error("This browser cannot capture audio here (it needs https or localhost).");
    }
    // Created before the first await, while the click still counts as a user gesture: browsers
    // (Firefox especially) keep an AudioContext made later suspended, and it would hear nothing.
    this.context = new AudioContext();
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          deviceId: deviceId ? { exact: deviceId } : undefined,
          channelCount: 1,
          echoCancellation: true,
          noiseSuppression: true,
        },
      });
    } catch (error) {
      await this.context.close();
      this.context = null;
      throw error;
    }
    this.context.resume(); // not awaited: it waits for a gesture when autoplay is blocked
    await this.context.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
    const source = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, "pcm-worklet");
    this.node.port.onmessage = (message) => this.onChunk(message.data);
    source.connect(this.node);
  }

  async stop() {
    if (this.context?.state === "closed") return;
    this.node?.port.postMessage("flush");
    await new Promise((resolve) => setTimeout(resolve, 50)); // let the last chunk arrive
    this.stream?.getTracks().forEach((track) => track.stop());
    await this.context?.close();
    this.node = this.context = this.stream = null;
  }
}

export function describeMicrophoneError(error) {
  if (error.name === "NotAllowedError" || error.name === "SecurityError") {
    return "Microphone access was denied. Allow it in the browser's site settings, then press Start again.";
  }
  if (error.name === "NotFoundError" || error.name === "OverconstrainedError") {
    return "No microphone found. Plug one in, or choose another in the list.";
  }
  return `The microphone could not start: ${error.message}`;
}
