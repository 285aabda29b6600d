// Drives web/streamer-client.js in Node against a scripted server (fake fetch and WebSocket) with a
// G.711 session (`encoding: "mulaw"` at 8 kHz, one byte a sample): a 2.5 s call is split at the session's
// largest frame, and the resume buffer keeps audio time by the encoding's bytes a sample. Prints, as one
// JSON line, the sizes of the frames the first socket got and the resumed socket's URL parameters.
import { StreamerClient } from "../../web/streamer-client.js";

const sockets = [];
class FakeWebSocket {
  static OPEN = 1;
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sizes = [];
    sockets.push(this);
  }
  send(data) {
    if (typeof data !== "string") this.sizes.push(data.byteLength);
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
const config = { sample_rate: 8000, encoding: "mulaw" };
const limits = { max_frame_bytes: 8000 }; // 1 s of μ-law at 8 kHz
let resumeAnswer = null;
globalThis.fetch = async (url) => {
  const body = { session_id: "sess_1", token: "tok", expires_at: 0, ws_url: "/v1/stream", config, limits };
  if (String(url).endsWith("/resume")) Object.assign(body, resumeAnswer);
  return new Response(JSON.stringify(body), { status: 201, headers: { "Content-Type": "application/json" } });
};

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
const until = async (check) => {
  for (let i = 0; i < 400 && !check(); i += 1) await tick();
  if (!check()) throw new Error("timed out");
};

const client = new StreamerClient({ baseUrl: "http://127.0.0.1:1", apiKey: "key" });
const session = client.connect(config, {}, { backoffBaseMs: 1, backoffMaxMs: 1 });
await until(() => sockets.length === 1);
const created = { type: "session.created", session_id: "sess_1", config, limits, resumed: false };
sockets[0].deliver(created);
session.sendAudio(new Uint8Array(20000).fill(0xff)); // 2.5 s of μ-law silence in one call
// a final up to 1.5 s: the first second's frame is transcribed, the second one (1-2 s) is still needed
sockets[0].deliver({ type: "transcript.final", seq: 1, segment_id: 1, text: "one", language: "en", audio_start_ms: 0, audio_end_ms: 1500 });
resumeAnswer = { last_seq: 1, transcribed_until_ms: 1500 };
sockets[0].close(1006);
await until(() => sockets.length === 2);
const params = Object.fromEntries(new URL(sockets[1].url).searchParams);
console.log(JSON.stringify({ sizes: sockets[0].sizes, params }));
process.exit(0);
