// Drives web/streamer-client.js in Node against a scripted server (fake fetch and WebSocket) with a
// container session (`encoding: "webm"`): a recorder's Blobs are sent as they are, in order, none dropped
// while connecting (more than maxBufferMs of them), and session.close goes after the last one. Then the
// socket drops and the session resumes: the resumed socket gets no audio_from_ms, nothing is re-sent, and
// the old recorder's Blob still being read is discarded (a new connection is a new container stream).
// Prints, as one JSON line, what each socket received, in order.
import { StreamerClient } from "../../web/streamer-client.js";

const sockets = [];
class FakeWebSocket {
  static OPEN = 1;
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.got = [];
    sockets.push(this);
  }
  send(data) {
    this.got.push(typeof data === "string" ? JSON.parse(data).type : new TextDecoder().decode(data));
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
const config = { encoding: "webm" };
const limits = { max_frame_bytes: 96000 };
globalThis.fetch = async (url) => {
  const body = { session_id: "sess_1", token: "tok", expires_at: 0, ws_url: "/v1/stream", config, limits };
  if (String(url).endsWith("/resume")) Object.assign(body, { last_seq: 0, transcribed_until_ms: 0 });
  return new Response(JSON.stringify(body), { status: 201, headers: { "Content-Type": "application/json" } });
};

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
const until = async (check) => {
  for (let i = 0; i < 400 && !check(); i += 1) await tick();
  if (!check()) throw new Error("timed out");
};

const client = new StreamerClient({ baseUrl: "http://127.0.0.1:1", apiKey: "key" });
// maxBufferMs: 1 — raw audio would be dropped down to its newest frame while connecting
const session = client.connect(config, {}, { backoffBaseMs: 1, backoffMaxMs: 1, maxBufferMs: 1 });
await until(() => sockets.length === 1);
session.sendAudio(new Blob(["HEADER"])); // before the socket is live: kept
session.sendAudio(new Blob(["c1"]));
const created = { type: "session.created", session_id: "sess_1", config, limits, resumed: false };
await session._blobs;
sockets[0].deliver(created);
session.sendAudio(new Blob(["c2"]));
session.sendAudio(new Uint8Array([99, 51])); // "c3": an ArrayBuffer view waits its turn behind the Blob
await until(() => sockets[0].got.length === 4);
session.sendAudio(new Blob(["old"])); // the old recorder's chunk, still being read at the drop
sockets[0].close(1006);
await until(() => sockets.length === 2);
sockets[1].deliver({ ...created, resumed: true });
await session._blobs;
session.sendAudio(new Blob(["HEADER2"])); // the restarted recorder
const closing = session.close();
await until(() => sockets[1].got.includes("session.close"));
sockets[1].deliver({ type: "session.closed", reason: "client_closed", audio_ms: 0, finals: 0 });
sockets[1].close(1000);
await closing;
const params = Object.fromEntries(new URL(sockets[1].url, "ws://x").searchParams);
console.log(JSON.stringify({ first: sockets[0].got, second: sockets[1].got, params }));
process.exit(0);
