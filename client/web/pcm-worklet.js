// AudioWorklet: microphone samples (at the AudioContext's rate) -> 16 kHz PCM16 little-endian,
// posted to the page in 100 ms messages. The browser's rate is usually 44.1 or 48 kHz, and
// Firefox cannot capture into a 16 kHz context, so the resampling happens here: a windowed-sinc
// low-pass below 8 kHz, then fractional interpolation at 16 kHz.

const TARGET_RATE = 16000;
const CHUNK_SAMPLES = 1600; // 100 ms at 16 kHz
const TAPS = 63;

function lowPass(inputRate) {
  const cutoff = Math.min(7200, inputRate / 2) / inputRate; // cycles per input sample
  const taps = new Float32Array(TAPS);
  const middle = (TAPS - 1) / 2;
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const x = i - middle;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const blackman = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (TAPS - 1)) +
      0.08 * Math.cos((4 * Math.PI * i) / (TAPS - 1));
    taps[i] = sinc * blackman;
    sum += taps[i];
  }
  return taps.map((tap) => tap / sum);
}

class PcmWorklet extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    this.taps = this.step > 1 ? lowPass(sampleRate) : null;
    this.history = new Float32Array(TAPS); // last filtered-input window
    this.filtered = []; // low-passed input not yet consumed
    this.position = 0; // fractional index into `filtered` of the next output sample
    this.out = new Int16Array(CHUNK_SAMPLES);
    this.outLength = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") this.flush();
    };
  }

  filter(sample) {
    if (!this.taps) return sample;
    this.history.copyWithin(0, 1);
    this.history[TAPS - 1] = sample;
    let acc = 0;
    for (let i = 0; i < TAPS; i++) acc += this.history[i] * this.taps[i];
    return acc;
  }

  emit(value) {
    const clipped = Math.max(-1, Math.min(1, value));
    this.out[this.outLength++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
    if (this.outLength === CHUNK_SAMPLES) this.flush();
  }

  flush() {
    if (this.outLength === 0) return;
    const chunk = this.out.slice(0, this.outLength);
    this.port.postMessage(chunk.buffer, [chunk.buffer]);
    this.outLength = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const frames = channels[0].length;
    for (let i = 0; i < frames; i++) {
      let mixed = 0;
      for (const channel of channels) mixed += channel[i];
      this.filtered.push(this.filter(mixed / channels.length));
    }
    while (this.position + 1 < this.filtered.length) {
      const index = Math.floor(this.position);
      const fraction = this.position - index;
      this.emit(this.filtered[index] * (1 - fraction) + this.filtered[index + 1] * fraction);
      this.position += this.step;
    }
    const consumed = Math.floor(this.position);
    this.filtered.splice(0, consumed);
    this.position -= consumed;
    return true;
  }
}

registerProcessor("pcm-worklet", PcmWorklet);
