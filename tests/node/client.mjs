// Interop client for tests/test_interop.py: Node's `ws` against `nbws serve`.
//
// Usage: node client.mjs SCENARIO URL
// Runs one scenario and prints one JSON object with what it observed; the Python test
// asserts on it. Exits non-zero (with the error on stderr) when the scenario itself fails.

import { createHash, randomBytes } from "node:crypto";
import WebSocket from "ws";

const [scenario, url] = process.argv.slice(2);

function open(target, protocols, options = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target, protocols, options);
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

function nextMessage(ws) {
  return new Promise((resolve, reject) => {
    ws.once("message", (data, isBinary) => resolve({ data: Buffer.from(data), isBinary }));
    ws.once("close", (code) => reject(new Error(`closed with ${code} before a message`)));
  });
}

function closed(ws) {
  return new Promise((resolve) => {
    ws.once("close", (code, reason) => resolve({ code, reason: reason.toString("utf8") }));
  });
}

const sha256 = (buffer) => createHash("sha256").update(buffer).digest("hex");

const scenarios = {
  async text(target) {
    const ws = await open(target);
    const reply = nextMessage(ws);
    ws.send("héllo wörld ✓");
    const { data, isBinary } = await reply;
    ws.close(1000);
    return { text: data.toString("utf8"), isBinary, close: await closed(ws) };
  },

  async binary(target) {
    const ws = await open(target);
    const payload = randomBytes(4096);
    const reply = nextMessage(ws);
    ws.send(payload);
    const { data, isBinary } = await reply;
    ws.close(1000);
    return { equal: data.equals(payload), isBinary, length: data.length };
  },

  async large(target) {
    const ws = await open(target);
    const payload = randomBytes(1 << 20);
    const reply = nextMessage(ws);
    ws.send(payload);
    const { data, isBinary } = await reply;
    ws.close(1000);
    return { sent: sha256(payload), received: sha256(data), length: data.length, isBinary };
  },

  async fragmented(target) {
    // Three fragments of one text message (one multi-byte character split across two).
    const ws = await open(target);
    const whole = Buffer.from("part one, part two, é", "utf8");
    const cut = whole.length - 1; // inside the two-byte "é"
    const reply = nextMessage(ws);
    ws.send(whole.subarray(0, 10), { binary: false, fin: false });
    ws.send(whole.subarray(10, cut), { binary: false, fin: false });
    ws.send(whole.subarray(cut), { binary: false, fin: true });
    const { data, isBinary } = await reply;
    ws.close(1000);
    return { text: data.toString("utf8"), isBinary };
  },

  async ping(target) {
    const ws = await open(target);
    const pong = new Promise((resolve) => ws.once("pong", (data) => resolve(data.toString())));
    ws.ping("are you there");
    const payload = await pong;
    ws.close(1000);
    return { pong: payload };
  },

  async client_close(target) {
    const ws = await open(target);
    const done = closed(ws);
    ws.close(4000, "client done");
    return await done;
  },

  async server_close(target) {
    const ws = await open(target);
    const done = closed(ws);
    const reply = nextMessage(ws);
    ws.send("last");
    const { data } = await reply;
    return { echo: data.toString("utf8"), ...(await done) };
  },

  async subprotocol(target) {
    const ws = await open(target, ["other", "nbws.echo"]);
    const chosen = ws.protocol;
    ws.close(1000);
    await closed(ws);
    const plain = await open(target);
    const none = plain.protocol;
    plain.close(1000);
    await closed(plain);
    return { chosen, none };
  },

  async deflate(target) {
    const ws = await open(target, [], { perMessageDeflate: true });
    const payload = Buffer.from("compress me ".repeat(20000), "utf8");
    const reply = nextMessage(ws);
    ws.send(payload.toString("utf8"));
    const { data } = await reply;
    ws.close(1000);
    return {
      extensions: ws.extensions,
      equal: data.equals(payload),
      length: data.length,
    };
  },
};

const run = scenarios[scenario];
if (run === undefined) {
  console.error(`unknown scenario ${scenario}; known: ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
try {
  const result = await run(url);
  console.log(JSON.stringify(result));
  process.exit(0);
} catch (error) {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
}
