// The demo page: microphone -> AudioWorklet (PCM16, 16 kHz, 100 ms chunks) -> StreamerClient -> the page.
// Where AudioWorklet is missing, MediaRecorder captures instead (WebM/Opus, or Ogg/Opus where that is what
// the browser records; 250 ms chunks) and the session's encoding names that container: the server decodes.
// No framework and no build step; everything the page shows is driven by protocol v1 events.

import { StreamerClient, StreamerError } from "/web/streamer-client.js";

const TARGET_RATE = 16000;
const CHUNK_MS = 100;
const TIMESLICE_MS = 250; // MediaRecorder: a chunk every 250 ms
// what MediaRecorder may record, in order of preference, and the session encoding that names each
const RECORDER_TYPES = [
  ["audio/webm;codecs=opus", "webm"],
  ["audio/ogg;codecs=opus", "ogg"],
];

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"),
  language: $("language"),
  task: $("task"),
  targetsField: $("targets-field"),
  targets: $("targets"),
  start: $("start"),
  stop: $("stop"),
  level: $("level"),
  levelBar: $("level-bar"),
  latency: $("latency"),
  latencyDetail: $("latency-detail"),
  model: $("model"),
  modelDetail: $("model-detail"),
  error: $("error"),
  notice: $("notice"),
  placeholder: $("placeholder"),
  finals: $("finals"),
  partial: $("partial"),
  capture: $("capture"),
  captureDetail: $("capture-detail"),
};

const STATE_LABELS = {
  idle: "Idle",
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  closed: "Stopped",
  error: "Error",
};

const client = new StreamerClient({ baseUrl: location.origin });
let models = null;
/** The running capture: { session, stream, context, node, source, sink, recorder, meter }; null when idle. */
let run = null;

/** How this browser captures: the AudioWorklet (PCM16), else MediaRecorder (a container); null: neither. */
function captureKind() {
  if (window.AudioWorkletNode) return { kind: "worklet" };
  if (!window.MediaRecorder) return null;
  for (const [mime, encoding] of RECORDER_TYPES) {
    if (MediaRecorder.isTypeSupported(mime)) return { kind: "recorder", mime, encoding };
  }
  return null;
}

const capture = captureKind();

// --- small view helpers

function setStatus(state, detail = "") {
  ui.status.dataset.state = state;
  ui.status.textContent = detail ? `${STATE_LABELS[state]} — ${detail}` : STATE_LABELS[state];
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

let noticeTimer = 0;
function showNotice(message, ms = 6000) {
  clearTimeout(noticeTimer);
  ui.notice.textContent = message;
  ui.notice.hidden = !message;
  if (message) noticeTimer = setTimeout(() => showNotice(""), ms);
}

function setControls(running) {
  ui.start.disabled = running || models === null;
  ui.stop.disabled = !running;
}

/** 83450 -> "01:23.4" */
function clock(ms) {
  const tenths = Math.max(0, Math.round(ms / 100));
  const minutes = Math.floor(tenths / 600);
  const seconds = ((tenths % 600) / 10).toFixed(1).padStart(4, "0");
  return `${String(minutes).padStart(2, "0")}:${seconds}`;
}

function languageName(code) {
  try {
    const names = new Intl.DisplayNames([navigator.language || "en"], { type: "language" });
    return `${names.of(code)} (${code})`;
  } catch {
    return code;
  }
}

function option(value, label) {
  const el = document.createElement("option");
  el.value = value;
  el.textContent = label;
  return el;
}

function setLevel(rms) {
  // dBFS mapped to 0..1 over -60..0 dB: a speaking voice sits around the middle
  const db = 20 * Math.log10(Math.max(rms, 1e-6));
  const v = Math.min(1, Math.max(0, (db + 60) / 60));
  ui.levelBar.style.transform = `scaleX(${v.toFixed(3)})`;
  ui.level.setAttribute("aria-valuenow", String(Math.round(v * 100)));
  // "loud" is within ~9 dB of full scale, where clipping starts to cost words
  ui.level.dataset.active = v > 0.85 ? "loud" : v > 0.2 ? "on" : "off";
}

// --- models and settings

async function loadModels() {
  try {
    models = await client.models();
  } catch (e) {
    showError(`Cannot load the server's models: ${e.message}`);
    setStatus("error");
    return;
  }
  const { asr, mt } = models;
  ui.model.textContent = mt ? `${asr.name} + ${mt.name}` : asr.name;
  ui.modelDetail.textContent = asr.multilingual
    ? `${asr.languages.length} languages${mt ? `, translation to ${mt.targets.length}` : ""}`
    : "English only";

  ui.language.replaceChildren();
  if (asr.multilingual) ui.language.append(option("auto", "Detect automatically"));
  for (const code of asr.languages) ui.language.append(option(code, languageName(code)));
  // tiny.en (the default model) is English-only; English is the sensible default everywhere
  ui.language.value = asr.languages.includes("en") ? "en" : asr.multilingual ? "auto" : asr.languages[0];

  ui.task.replaceChildren(option("transcribe", "Transcribe"));
  if (asr.tasks.includes("translate")) ui.task.append(option("translate", "Translate to English"));

  ui.targets.replaceChildren();
  ui.targetsField.hidden = !mt || !mt.targets?.length;
  for (const code of mt?.targets ?? []) {
    const id = `target-${code}`;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.id = id;
    box.value = code;
    box.name = "translate_to";
    const label = document.createElement("label");
    label.htmlFor = id;
    label.className = "target";
    label.append(box, ` ${languageName(code)}`);
    ui.targets.append(label);
  }
  ui.language.disabled = false;
  ui.task.disabled = ui.task.options.length < 2;
  setControls(false);
}

function currentConfig() {
  const language = ui.language.value;
  const targets = [...ui.targets.querySelectorAll("input:checked")].map((box) => box.value);
  return {
    language: language === "auto" ? null : language,
    task: ui.task.value,
    translate_to: targets,
    interim_results: true,
  };
}

function onSettingsChanged() {
  // applies to the following audio of a live session (the server answers an unsupported value with an error)
  if (run?.session) run.session.update(currentConfig());
}

// --- transcript view

const finalsByKey = new Map(); // `${generation}:${seq}` -> the final's <li>
const stoppedAt = new Map(); // `${generation}:${segment_id}` -> performance.now() at speech.stopped
let lastAudioAt = 0;
let partialsShown = 0;

function showPartial(event) {
  const text = event.text.trim();
  ui.partial.hidden = !text;
  ui.partial.textContent = text;
  if (text) {
    partialsShown += 1;
    ui.partial.dataset.count = String(partialsShown);
    ui.placeholder.hidden = true;
  }
}

function clearPartial() {
  ui.partial.textContent = "";
  ui.partial.hidden = true;
}

function addFinal(event, meta) {
  clearPartial();
  if (event.dropped) return; // a segment without words: nothing to show
  ui.placeholder.hidden = true;
  const li = document.createElement("li");
  li.className = "final";
  li.dataset.seq = String(event.seq);
  li.dataset.segmentId = String(event.segment_id);
  const time = document.createElement("span");
  time.className = "final-time";
  const start = event.audio_start_ms + meta.offsetMs;
  const end = event.audio_end_ms + meta.offsetMs;
  time.textContent = `${clock(start)}–${clock(end)}`;
  const text = document.createElement("span");
  text.className = "final-text";
  text.textContent = event.text;
  if (event.language) text.lang = event.language;
  li.append(time, text);
  ui.finals.append(li);
  finalsByKey.set(`${meta.generation}:${event.seq}`, li);
  li.scrollIntoView({ block: "nearest" });
  showLatency(event, meta);
}

function addTranslation(event, meta) {
  const li = finalsByKey.get(`${meta.generation}:${event.seq}`);
  if (!li) return;
  const p = document.createElement("span");
  p.className = "translation";
  p.lang = event.language;
  p.dataset.language = event.language;
  p.textContent = event.text;
  li.append(p);
}

function showLatency(event, meta) {
  // Primary: from the server's speech.stopped to the final (the model's share; near zero when the server
  // decoded speculatively during the pause). Detail: from when the final's last audio left this page,
  // which adds the end-of-speech silence the server waits for and the network.
  const key = `${meta.generation}:${event.segment_id}`;
  const now = performance.now();
  const stopped = stoppedAt.get(key);
  stoppedAt.delete(key);
  const sentAt = run?.session?.audioSentAt(event.audio_end_ms) ?? null;
  if (stopped !== undefined) {
    ui.latency.textContent = `${Math.round(now - stopped)} ms`;
    ui.latencyDetail.textContent =
      sentAt === null ? "end of speech → final" : `end of speech → final · ${Math.round(now - sentAt)} ms after its audio`;
  } else if (lastAudioAt) {
    ui.latency.textContent = `${Math.round(now - lastAudioAt)} ms`;
    ui.latencyDetail.textContent = "last audio sent → final";
  }
}

// --- session

function handlers() {
  return {
    onStateChange(state, info) {
      if (!run) return;
      // a new connection is a new container stream: the recorder starts again, header first
      if (state === "live" && info.reconnected && run.recorder) record(run);
      if (state === "live") {
        setStatus("live", info.reconnected ? (info.resumed ? "resumed" : "reconnected") : "");
        if (info.reconnected) showNotice(info.resumed ? "Reconnected; the session was resumed." : "Reconnected with a new session.");
        showError("");
      } else if (state === "reconnecting") {
        setStatus("reconnecting", `attempt ${info.attempt}`);
      } else if (state === "closed" && info.reason === "failed") {
        teardownAudio();
        run = null;
        setStatus("error");
        setControls(false);
      }
    },
    onFailure(error) {
      showError(error.fatal ? error.message : `${error.message} Reconnecting…`);
    },
    onSpeechStopped(event, meta) {
      stoppedAt.set(`${meta.generation}:${event.segment_id}`, performance.now());
    },
    onTranscriptPartial: showPartial,
    onTranscriptFinal: addFinal,
    onTranslationFinal: addTranslation,
    onWarning(event) {
      showNotice(event.message);
    },
    onError(event) {
      // an `error` event: a refused message keeps the session; otherwise a close follows (onFailure)
      showError(`Server: ${event.message}`);
    },
  };
}

function micErrorMessage(e) {
  switch (e?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was denied. Allow the microphone for this site (the icon in the address bar) and press Start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one and press Start again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone could not be opened: another application may be using it.";
    default:
      return `The microphone could not be started: ${e?.message ?? e}`;
  }
}

async function start() {
  showError("");
  showNotice("");
  setControls(true);
  setStatus("connecting");

  if (!navigator.mediaDevices?.getUserMedia || !capture) {
    fail(
      window.isSecureContext
        ? "This browser cannot capture audio (no getUserMedia, and neither AudioWorklet nor MediaRecorder with Opus)."
        : "The microphone needs a secure page: open this demo over https or on localhost.",
    );
    return;
  }
  let stream;
  try {
    // Echo cancellation and noise suppression help in a real room. Automatic gain control is off: at the
    // start of a stream it overshoots into clipping, which costs Whisper more words than a quiet voice does.
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: false },
    });
  } catch (e) {
    fail(micErrorMessage(e));
    return;
  }

  if (capture.kind === "recorder") {
    await startRecorder(stream);
    return;
  }
  const context = new AudioContext({ latencyHint: "interactive" });
  run = { stream, context, session: null, node: null, source: null, sink: null };
  try {
    await context.audioWorklet.addModule("/demo/pcm-worklet.js");
    await context.resume();
  } catch (e) {
    fail(`The audio processor could not be loaded: ${e.message}`);
    return;
  }
  const rate = Math.min(TARGET_RATE, context.sampleRate);
  const node = new AudioWorkletNode(context, "pcm-capture", {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    channelCount: 1,
    channelCountMode: "explicit",
    processorOptions: { targetRate: rate, chunkMs: CHUNK_MS },
  });
  const session = client.connect({ ...currentConfig(), sample_rate: rate }, handlers());
  Object.assign(run, { node, session });

  node.port.onmessage = (e) => {
    if (e.data.type !== "chunk") return;
    setLevel(e.data.rms);
    session.sendAudio(e.data.pcm); // buffered by the client until the socket is live
    lastAudioAt = performance.now();
  };
  const source = context.createMediaStreamSource(stream);
  // The worklet must be pulled by the graph to run: route it into a muted gain to the speakers.
  const sink = context.createGain();
  sink.gain.value = 0;
  source.connect(node).connect(sink).connect(context.destination);
  Object.assign(run, { source, sink });

  try {
    await session.ready;
  } catch (e) {
    // onFailure has shown the message (a refused session: 401/403/429/503, or a refused upgrade)
    if (!(e instanceof StreamerError)) fail(String(e));
  }
}

/** MediaRecorder capture: its chunks are a container stream the server decodes (the session's encoding). */
async function startRecorder(stream) {
  const session = client.connect({ ...currentConfig(), encoding: capture.encoding }, handlers());
  run = { stream, context: null, session, recorder: null, meter: null };
  startMeter(run);
  record(run);
  try {
    await session.ready;
  } catch (e) {
    if (!(e instanceof StreamerError)) fail(String(e));
  }
}

/** Start (or start again) the recorder: a new one writes a new container, its header first. */
function record(current) {
  const previous = current.recorder;
  const recorder = new MediaRecorder(current.stream, { mimeType: capture.mime });
  current.recorder = recorder; // chunks of any other recorder are ignored from now on
  if (previous && previous.state !== "inactive") previous.stop();
  recorder.ondataavailable = (e) => {
    if (current.recorder !== recorder || e.data.size === 0) return;
    current.session.sendAudio(e.data); // read and sent in order; kept by the client while connecting
    lastAudioAt = performance.now();
  };
  recorder.start(TIMESLICE_MS);
}

/** Stop the recorder; resolves once its last chunk has been handed to the session. */
function stopRecorder(recorder) {
  return new Promise((resolve) => {
    if (recorder.state === "inactive") {
      resolve();
      return;
    }
    const timer = setTimeout(resolve, 1000);
    recorder.addEventListener("stop", () => {
      clearTimeout(timer);
      resolve();
    });
    recorder.stop();
  });
}

/** The level meter without a worklet: an AnalyserNode read ten times a second (none if audio is off). */
function startMeter(current) {
  if (!window.AudioContext) return;
  try {
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 2048;
    context.createMediaStreamSource(current.stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const v of samples) sum += v * v;
      setLevel(Math.sqrt(sum / samples.length));
    }, 100);
    Object.assign(current, { context, meter: timer });
  } catch {
    // the meter is a nicety: capture goes on without it
  }
}

/** Flush the worklet's last partial chunk into the session (speech right before Stop counts too). */
function flushWorklet(node) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 300);
    node.port.addEventListener("message", (e) => {
      if (e.data.type === "flushed") {
        clearTimeout(timer);
        resolve();
      }
    });
    node.port.postMessage("flush");
  });
}

async function stop() {
  if (!run) return;
  const current = run;
  ui.stop.disabled = true;
  setStatus("live", "finishing…");
  if (current.recorder) await stopRecorder(current.recorder); // its last chunk first
  current.source?.disconnect();
  current.stream.getTracks().forEach((t) => t.stop());
  if (current.node) await flushWorklet(current.node);
  const closed = current.session ? await current.session.close() : null;
  teardownAudio(current);
  if (run === current) run = null;
  clearPartial();
  setLevel(0);
  setStatus("closed", closed ? `${(closed.audio_ms / 1000).toFixed(1)} s of audio, ${closed.finals} final(s)` : "");
  setControls(false);
}

function teardownAudio(current = run) {
  if (!current) return;
  clearInterval(current.meter);
  const recorder = current.recorder;
  current.recorder = null;
  if (recorder && recorder.state !== "inactive") recorder.stop();
  current.node?.port.postMessage("stop");
  current.stream?.getTracks().forEach((t) => t.stop());
  if (current.context && current.context.state !== "closed") current.context.close().catch(() => {});
}

function fail(message) {
  if (run) {
    teardownAudio(run);
    run.session?.close();
    run = null;
  }
  showError(message);
  setStatus("error");
  setLevel(0);
  setControls(false);
}

ui.start.addEventListener("click", () => start().catch((e) => fail(`Unexpected error: ${e.message}`)));
ui.stop.addEventListener("click", () => stop().catch((e) => fail(`Unexpected error: ${e.message}`)));
ui.language.addEventListener("change", onSettingsChanged);
ui.task.addEventListener("change", onSettingsChanged);
ui.targets.addEventListener("change", onSettingsChanged);
window.addEventListener("pagehide", () => {
  if (run?.session) run.session.close();
});

function showCapture() {
  ui.capture.dataset.kind = capture?.kind ?? "none";
  if (capture?.kind === "recorder") {
    ui.capture.textContent = "MediaRecorder";
    ui.captureDetail.textContent = `${capture.mime} (no AudioWorklet here)`;
  } else if (capture) {
    ui.capture.textContent = "AudioWorklet";
    ui.captureDetail.textContent = "PCM16, 16 kHz";
  } else {
    ui.capture.textContent = "unavailable";
    ui.captureDetail.textContent = "";
  }
}

setStatus("idle");
showCapture();
loadModels();
