/** The simulator's Socket Mode side on its own, with a bare WebSocket client standing in for the app. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { SlackApiSim } from "../../src/simulator/slack-api.js";

const APP_TOKEN = "xapp-1-A0SIMAPP001-unit";
let sim: SlackApiSim;
const sockets: WebSocket[] = [];

beforeEach(async () => {
  sim = await SlackApiSim.start({
    botToken: "xoxb-unit",
    teamId: "T0UNIT",
    socketMode: { appToken: APP_TOKEN, ackTimeoutMs: 300, retries: 2 },
  });
});
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  await sim.close();
});

async function open(token = APP_TOKEN): Promise<Record<string, unknown>> {
  const r = await fetch(`${sim.url}apps.connections.open`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
  });
  return (await r.json()) as Record<string, unknown>;
}

/** Connects and resolves with the socket and its messages (the first is hello). */
async function connect(url: string): Promise<{ ws: WebSocket; messages: Record<string, unknown>[] }> {
  const ws = new WebSocket(url);
  sockets.push(ws);
  const messages: Record<string, unknown>[] = [];
  ws.on("message", (d) => messages.push(JSON.parse(String(d)) as Record<string, unknown>));
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  await sim.socket!.waitForConnection(5000, 1);
  return { ws, messages };
}

describe("Socket Mode in the simulator", () => {
  it("answers apps.connections.open for the app-level token only", async () => {
    expect(await open("xoxb-unit")).toEqual({ ok: false, error: "not_allowed_token_type" });
    expect(await open("xapp-1-wrong")).toEqual({ ok: false, error: "invalid_auth" });
    const ok = await open();
    expect(ok.ok).toBe(true);
    expect(String(ok.url)).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/link\/\?ticket=[\w-]+&app_id=A0SIMAPP001$/);
    // And the app-level token works for nothing else.
    const r = await fetch(`${sim.url}auth.test`, {
      method: "POST",
      headers: { authorization: `Bearer ${APP_TOKEN}` },
    });
    expect(await r.json()).toEqual({ ok: false, error: "not_allowed_token_type" });
  });

  it("says hello on connect, and a URL is good for one connection", async () => {
    const { url } = (await open()) as { url: string };
    const { messages } = await connect(url);
    await expect.poll(() => messages[0]?.type).toBe("hello");
    expect(messages[0]).toMatchObject({ num_connections: 1, connection_info: { app_id: "A0SIMAPP001" } });
    const again = new WebSocket(url);
    sockets.push(again);
    const refused = await new Promise<string>((resolve) => {
      again.once("unexpected-response", (_req, res) => resolve(String(res.statusCode)));
      again.once("open", () => resolve("opened"));
      again.once("error", (e) => resolve(e.message));
    });
    expect(refused).toBe("401");
  });

  it("re-sends an unacked envelope with retry_attempt, then gives up naming it", async () => {
    const { url } = (await open()) as { url: string };
    const { messages } = await connect(url);
    const done = sim.command({ user: { id: "U0X", team_id: "T0UNIT" }, command: "/approvals" });
    await expect(done).rejects.toThrow(
      /never acked slash_commands envelope .* \(3 sent, 1 connection\(s\) open\)/,
    );
    const envelopes = messages.filter((m) => m.type === "slash_commands");
    expect(envelopes.map((e) => e.retry_attempt)).toEqual([undefined, 1, 2]);
    expect(new Set(envelopes.map((e) => e.envelope_id)).size).toBe(1);
    expect(envelopes[0]).toMatchObject({
      accepts_response_payload: true,
      payload: { command: "/approvals" },
    });
  });

  it("hands the ack's payload back as the answer, and asks for a refresh with disconnect", async () => {
    const { url } = (await open()) as { url: string };
    const { ws, messages } = await connect(url);
    ws.on("message", (d) => {
      const m = JSON.parse(String(d)) as { envelope_id?: string };
      if (m.envelope_id)
        ws.send(JSON.stringify({ envelope_id: m.envelope_id, payload: { text: "hi there" } }));
    });
    const r = await sim.command({ user: { id: "U0X", team_id: "T0UNIT" }, command: "/approvals" });
    expect(r).toMatchObject({ status: 200, body: JSON.stringify({ text: "hi there" }) });
    expect(sim.socket!.disconnect()).toBe(1);
    await expect
      .poll(() => messages.at(-1))
      .toEqual({
        type: "disconnect",
        reason: "refresh_requested",
        debug_info: { host: "countersign-sim" },
      });
  });
});
