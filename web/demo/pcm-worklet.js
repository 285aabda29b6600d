/**
 * AudioWorklet "pcm-capture": microphone Float32 -> PCM16 mono chunks for the streamer protocol.
 *
 * Runs on the audio thread. The input (the AudioContext's rate, usually 44.1 or 48 kHz) is low-pass
 * filtered (windowed sinc, cut-off at 0.45 x the target rate, so nothing aliases into speech) and
 * resampled to `targetRate` (16 kHz, what the model uses; the server then has nothing to resample).
 * Every `chunkMs` of output it posts `{type: "chunk", pcm: ArrayBuffer, rms, peak}` (the buffer is
 * transferred, not copied). Messages in: "flush" posts what is buffered (if at least 10 ms, the
 * protocol's minimum frame) then `{type: "flushed"}`; "stop" ends processing.
 */

const MIN_FRAME_MS = 10;

/** Low-pass FIR taps (Blackman-windowed sinc), `cutoff` in cycles per input sample, unity DC gain. */
function lowPass(cutoff, count) {
  const taps = new Float32Array(count);
  const mid = (count - 1) / 2;
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (count - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (count - 1));
    taps[i] = sinc * w;
    sum += taps[i];
  }
  for (let i = 0; i < count; i++) taps[i] /= sum;
  return taps;
}

class PcmCaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions ?? {};
    // `sampleRate` is the AudioWorkletGlobalScope's: the context's rate
    this.outRate = Math.min(opts.targetRate ?? 16000, sampleRate);
    this.step = sampleRate / this.outRate; // input samples per output sample
    this.chunkSize = Math.round((this.outRate * (opts.chunkMs ?? 100)) / 1000);
    this.minSize = Math.ceil((this.outRate * MIN_FRAME_MS) / 1000);

    if (this.step > 1) {
      const count = Math.ceil(this.step * 16) | 1; // odd length, ~16 taps per output sample
      this.taps = lowPass((0.45 * this.outRate) / sampleRate, count);
      this.history = new Float32Array(count); // ring of the last `count` inputs
      this.head = 0;
    } else {
      this.taps = null;
    }
    // filtered input not yet consumed by the resampler; `pos` is the next output's position in it
    this.filtered = new Float32Array(0);
    this.pos = 0;

    this.out = new Int16Array(this.chunkSize);
    this.fill = 0;
    this.sumSquares = 0;
    this.peak = 0;
    this.running = true;

    this.port.onmessage = (e) => {
      if (e.data === "flush") {
        if (this.fill >= this.minSize) this.post(this.fill);
        this.fill = 0;
        this.port.postMessage({ type: "flushed" });
      } else if (e.data === "stop") {
        this.running = false;
      }
    };
  }

  /** The input block low-pass filtered (unchanged when there is no downsampling). */
  filter(block) {
    if (this.taps === null) return block;
    const { taps, history } = this;
    const n = taps.length;
    const out = new Float32Array(block.length);
    for (let i = 0; i < block.length; i++) {
      history[this.head] = block[i];
      this.head = (this.head + 1) % n;
      // history[head] is now the oldest sample; taps are symmetric, so order does not matter
      let acc = 0;
      let j = this.head;
      for (let k = 0; k < n; k++) {
        acc += taps[k] * history[j];
        j = j + 1 === n ? 0 : j + 1;
      }
      out[i] = acc;
    }
    return out;
  }

  push(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.out[this.fill++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    this.sumSquares += s * s;
    const a = Math.abs(s);
    if (a > this.peak) this.peak = a;
    if (this.fill === this.chunkSize) {
      this.post(this.fill);
      this.fill = 0;
    }
  }

  post(count) {
    const pcm = this.out.slice(0, count).buffer;
    const rms = Math.sqrt(this.sumSquares / Math.max(1, count));
    this.port.postMessage({ type: "chunk", pcm, rms, peak: this.peak }, [pcm]);
    this.sumSquares = 0;
    this.peak = 0;
  }

  process(inputs) {
    if (!this.running) return false;
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // not connected yet
    let block = channels[0];
    if (channels.length > 1) {
      // mix down to mono
      block = new Float32Array(channels[0].length);
      for (const ch of channels) for (let i = 0; i < ch.length; i++) block[i] += ch[i] / channels.length;
    }
    const filtered = this.filter(block);
    if (this.step === 1) {
      for (let i = 0; i < filtered.length; i++) this.push(filtered[i]);
      return true;
    }
    // resample by linear interpolation over the band-limited signal
    const buf = new Float32Array(this.filtered.length + filtered.length);
    buf.set(this.filtered, 0);
    buf.set(filtered, this.filtered.length);
    let pos = this.pos;
    while (pos + 1 < buf.length) {
      const i = Math.floor(pos);
      const frac = pos - i;
      this.push(buf[i] + (buf[i + 1] - buf[i]) * frac);
      pos += this.step;
    }
    const keep = Math.floor(pos);
    this.filtered = buf.slice(keep);
    this.pos = pos - keep;
    return true;
  }
}

registerProcessor("pcm-capture", PcmCaptureProcessor);
