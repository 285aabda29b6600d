// Drives web/streamer-client.js in Node against a scripted server (fake fetch and WebSocket) through a
// drop and a resume; prints what the client did as one JSON line for tests/test_client_js.py to check.
import { StreamerClient } from "../../web/streamer-client.js";

const sockets = [];
class FakeWebSocket {
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    sockets.push(this);
  }
  send() {}
  close(code = 1000) {
    this.onclose?.({ code, reason: "" });
  }
  deliver(event) {
    this.onmessage?.({ data: JSON.stringify(event) });
  }
}
globalThis.WebSocket = FakeWebSocket;
globalThis.fetch = async () =>
  new Response(
    JSON.stringify({ session_id: "sess_1", token: "tok", expires_at: 0, ws_url: "/v1/stream", config: {}, limits: {} }),
    { status: 201, headers: { "Content-Type": "application/json" } },
  );

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
const until = async (check) => {
  for (let i = 0; i < 400 && !check(); i += 1) await tick();
  if (!check()) throw new Error("timed out");
};

const delivered = [];
const client = new StreamerClient({ baseUrl: "http://127.0.0.1:1", apiKey: "key" });
const session = client.connect(
  { language: "en", translate_to: ["es"] },
  { onEvent: (event) => delivered.push(`${event.type}:${event.seq ?? ""}:${event.language ?? ""}`) },
  { backoffBaseMs: 1, backoffMaxMs: 1 },
);
await until(() => sockets.length === 1);
const created = { type: "session.created", session_id: "sess_1", config: {}, limits: {}, resumed: false };
sockets[0].deliver(created);
sockets[0].deliver({ type: "transcript.final", seq: 1, segment_id: 1, text: "one", language: "en" });
const resumeFrom = session.resumeFrom();
sockets[0].close(1006); // dropped while the translation of final 1 is being made

await until(() => sockets.length === 2);
const lastSeq = new URL(sockets[1].url).searchParams.get("last_seq");
sockets[1].deliver({ ...created, resumed: true });
// the server replays from last_seq: final 1 again, then its translation
sockets[1].deliver({ type: "transcript.final", seq: 1, segment_id: 1, text: "one", language: "en" });
sockets[1].deliver({ type: "translation.final", seq: 1, segment_id: 1, text: "uno", language: "es" });
sockets[1].deliver({ type: "transcript.final", seq: 2, segment_id: 2, text: "two", language: "en" });
console.log(JSON.stringify({ resumeFrom, lastSeq, delivered }));
process.exit(0);
