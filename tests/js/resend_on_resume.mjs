// Drives web/streamer-client.js in Node against a scripted server (fake fetch and WebSocket): audio is
// sent, a final covers the first part, the socket dies, the session resumes. Prints, as one JSON line,
// the resumed socket's URL parameters and the audio frames each socket received (by their first sample).
import { StreamerClient } from "../../web/streamer-client.js";

const sockets = [];
class FakeWebSocket {
  static OPEN = 1;
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.frames = [];
    sockets.push(this);
  }
  send(data) {
    if (typeof data !== "string") this.frames.push(new Int16Array(data)[0]);
  }
  close(code = 1000) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  deliver(event) {
    this.readyState = 1;
    this.onmessage?.({ data: JSON.stringify(event) });
  }
}
globalThis.WebSocket = FakeWebSocket;
let resumeAnswer = null;
globalThis.fetch = async (url) => {
  const body = { session_id: "sess_1", token: "tok", expires_at: 0, ws_url: "/v1/stream", config: {}, limits: {} };
  if (String(url).endsWith("/resume")) Object.assign(body, resumeAnswer);
  return new Response(JSON.stringify(body), { status: 201, headers: { "Content-Type": "application/json" } });
};

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
const until = async (check) => {
  for (let i = 0; i < 400 && !check(); i += 1) await tick();
  if (!check()) throw new Error("timed out");
};
// 100 ms of audio at 16 kHz whose first sample is `n` (so frames can be told apart)
const frame = (n) => {
  const pcm = new Int16Array(1600);
  pcm[0] = n;
  return pcm;
};

const client = new StreamerClient({ baseUrl: "http://127.0.0.1:1", apiKey: "key" });
const session = client.connect({ language: "en" }, {}, { backoffBaseMs: 1, backoffMaxMs: 1 });
await until(() => sockets.length === 1);
const created = { type: "session.created", session_id: "sess_1", config: {}, limits: {}, resumed: false };
sockets[0].deliver(created);
for (let n = 1; n <= 5; n += 1) session.sendAudio(frame(n)); // 0..500 ms
// a final for the first 200 ms: frames 1 and 2 are transcribed, the rest is in flight
sockets[0].deliver({ type: "transcript.final", seq: 1, segment_id: 1, text: "one", language: "en", audio_start_ms: 0, audio_end_ms: 200 });
resumeAnswer = { last_seq: 1, transcribed_until_ms: 300 }; // the server got frame 3 done as well (no final)
sockets[0].close(1006); // the instance died
session.sendAudio(frame(6)); // while reconnecting: buffered

await until(() => sockets.length === 2);
const params = Object.fromEntries(new URL(sockets[1].url).searchParams);
sockets[1].deliver({ ...created, resumed: true });
session.sendAudio(frame(7));
console.log(JSON.stringify({ params, first: sockets[0].frames, second: sockets[1].frames }));
process.exit(0);
