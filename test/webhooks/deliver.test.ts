import http, { type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it } from "vitest";
import { deliverWebhook, nextDelayMs } from "../../src/adapters/webhooks/deliver.js";

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BODY = JSON.stringify({
  type: "decision.approved",
  timestamp: "2026-03-02T10:00:00.000Z",
  data: {
    action_id: "act_1",
    request_id: "r1",
    agent_id: "billing-agent",
    verdict: "approved",
    record: "x.y.z",
  },
});

interface Hit {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

interface Receiver {
  port: number;
  hits: Hit[];
}

const servers: http.Server[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A real receiver on 127.0.0.1; `answer` writes the response for each hit. */
async function receiver(answer: (res: http.ServerResponse, hit: Hit) => void): Promise<Receiver> {
  const hits: Hit[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      body += c;
    });
    req.on("end", () => {
      const hit = { path: req.url ?? "", headers: req.headers, body };
      hits.push(hit);
      answer(res, hit);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as AddressInfo).port, hits };
}

function send(url: string, extra: Partial<Parameters<typeof deliverWebhook>[0]> = {}) {
  return deliverWebhook({ url, secret: SECRET, id: "dec_01", body: BODY, allowPrivate: true, ...extra });
}

describe("deliverWebhook", () => {
  it("delivers a body the receiver verifies with the standardwebhooks package", async () => {
    const rx = await receiver((res) => res.writeHead(204).end());
    const r = await send(`http://127.0.0.1:${rx.port}/hooks/countersign?x=1`);
    expect(r).toMatchObject({ ok: true, status: 204, error: null, stop: false, address: "127.0.0.1" });
    expect(rx.hits).toHaveLength(1);
    const hit = rx.hits[0]!;
    expect(hit.path).toBe("/hooks/countersign?x=1");
    expect(hit.body).toBe(BODY);
    expect(hit.headers["webhook-id"]).toBe("dec_01");
    expect(hit.headers["content-type"]).toBe("application/json");
    expect(new Webhook(SECRET).verify(hit.body, hit.headers as Record<string, string>)).toEqual(
      JSON.parse(BODY),
    );
  });

  it("reports a 500 as a failure to retry", async () => {
    const rx = await receiver((res) => res.writeHead(500).end("boom"));
    const r = await send(`http://127.0.0.1:${rx.port}/`);
    expect(r).toMatchObject({ ok: false, status: 500, stop: false, retryAfterMs: null });
    expect(r.error).toContain("500");
  });

  it("stops for good on 410 Gone", async () => {
    const rx = await receiver((res) => res.writeHead(410).end());
    const r = await send(`http://127.0.0.1:${rx.port}/`);
    expect(r).toMatchObject({ ok: false, status: 410, stop: true });
  });

  it("does not follow a redirect, so a callback cannot bounce to another host", async () => {
    const rx = await receiver((res, hit) => {
      if (hit.path === "/start") res.writeHead(302, { location: "/elsewhere" }).end();
      else res.writeHead(200).end();
    });
    const r = await send(`http://127.0.0.1:${rx.port}/start`);
    expect(r).toMatchObject({ ok: false, status: 302, stop: false });
    expect(r.error).toMatch(/^redirect not followed/);
    expect(rx.hits.map((h) => h.path)).toEqual(["/start"]);
  });

  it("reads Retry-After seconds on 429 and an HTTP date on 503", async () => {
    const now = Date.parse("2026-03-02T10:00:00Z");
    const rx = await receiver((res, hit) => {
      if (hit.path === "/busy") res.writeHead(429, { "retry-after": "120" }).end();
      else res.writeHead(503, { "retry-after": "Mon, 02 Mar 2026 10:05:00 GMT" }).end();
    });
    const busy = await send(`http://127.0.0.1:${rx.port}/busy`, { now: () => now });
    expect(busy).toMatchObject({ ok: false, status: 429, retryAfterMs: 120_000 });
    const down = await send(`http://127.0.0.1:${rx.port}/down`, { now: () => now });
    expect(down).toMatchObject({ ok: false, status: 503, retryAfterMs: 300_000 });
  });

  it("ignores Retry-After on statuses other than 429 and 503", async () => {
    const rx = await receiver((res) => res.writeHead(500, { "retry-after": "120" }).end());
    expect((await send(`http://127.0.0.1:${rx.port}/`)).retryAfterMs).toBeNull();
  });

  it("gives up on a receiver that does not answer within the timeout", async () => {
    const rx = await receiver(() => {
      /* never answers */
    });
    const started = Date.now();
    const r = await send(`http://127.0.0.1:${rx.port}/`, { timeoutMs: 300 });
    const took = Date.now() - started;
    expect(r).toMatchObject({ ok: false, status: null, error: "timed out after 300 ms" });
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(3000);
    expect(r.durationMs).toBeGreaterThanOrEqual(290);
  });

  it("counts a 2xx status line as delivered even when the receiver then stalls its body", async () => {
    const rx = await receiver((res) => {
      res.writeHead(200, { "content-length": "100" });
      res.write("partial");
    });
    const r = await send(`http://127.0.0.1:${rx.port}/`, { timeoutMs: 300 });
    expect(r).toMatchObject({ ok: true, status: 200, error: null });
  });

  it("refuses 127.0.0.1 unless the origin allows private targets, and sends nothing", async () => {
    const rx = await receiver((res) => res.writeHead(200).end());
    const r = await send(`http://127.0.0.1:${rx.port}/`, { allowPrivate: false });
    expect(r).toMatchObject({ ok: false, status: null, address: "127.0.0.1" });
    expect(r.error).toMatch(/loopback/);
    expect(rx.hits).toHaveLength(0);
  });

  it("refuses a DNS name that resolves to loopback (localhost) unless private targets are allowed", async () => {
    const rx = await receiver((res) => res.writeHead(200).end());
    const refused = await send(`http://localhost:${rx.port}/`, { allowPrivate: false });
    expect(refused.ok).toBe(false);
    expect(refused.error).toMatch(/^refused localhost: .*loopback/);
    expect(rx.hits).toHaveLength(0);

    const delivered = await send(`http://localhost:${rx.port}/`, { allowPrivate: true });
    expect(delivered).toMatchObject({ ok: true, status: 200, address: "127.0.0.1" });
    // Connected to the checked address, but the Host header still names the host.
    expect(rx.hits[0]!.headers.host).toBe(`localhost:${rx.port}`);
  });

  it("refuses link-local and metadata literals without connecting", async () => {
    for (const url of [
      "http://169.254.169.254/latest/meta-data/",
      "http://[fd00:ec2::254]/",
      "http://[::ffff:169.254.169.254]/",
    ]) {
      const r = await send(url, { allowPrivate: true, timeoutMs: 1000 });
      expect(r.ok, url).toBe(false);
      expect(r.error, url).toMatch(/metadata/);
      expect(r.durationMs, url).toBeLessThan(500);
    }
  });

  it("returns an error result for a host that does not resolve", async () => {
    const r = await send("http://no-such-host.invalid/hook", { timeoutMs: 5000 });
    expect(r).toMatchObject({ ok: false, status: null, address: null, stop: false });
    expect(r.error).toMatch(/^could not resolve no-such-host\.invalid/);
  });

  it("returns an error result when the connection is refused", async () => {
    const probe = http.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const r = await send(`http://127.0.0.1:${port}/`);
    expect(r).toMatchObject({ ok: false, status: null });
    expect(r.error).toMatch(/ECONNREFUSED/);
  });

  it("returns error results, never throws, for a bad URL, a bad secret or a header-splitting id", async () => {
    const rx = await receiver((res) => res.writeHead(200).end());
    expect((await send("not a url")).error).toMatch(/not a valid URL/);
    expect((await send("ftp://example.com/")).error).toMatch(/scheme ftp:/);
    expect((await send(`http://user:pw@127.0.0.1:${rx.port}/`)).error).toMatch(/user name or password/);
    expect((await send(`http://127.0.0.1:${rx.port}/`, { secret: "plain" })).error).toMatch(/whsec_/);
    const split = await send(`http://127.0.0.1:${rx.port}/`, { id: "dec_1\r\nx-injected: 1" });
    expect(split.ok).toBe(false);
    expect(split.error).toMatch(/cannot send the webhook/);
    expect(rx.hits).toHaveLength(0);
  });
});

describe("nextDelayMs", () => {
  const schedule = [5_000, 300_000, 1_800_000];

  it("walks the schedule and ends when it is exhausted", () => {
    expect(nextDelayMs(1, schedule, null)).toBe(5_000);
    expect(nextDelayMs(2, schedule, null)).toBe(300_000);
    expect(nextDelayMs(3, schedule, null)).toBe(1_800_000);
    expect(nextDelayMs(4, schedule, null)).toBeNull();
    expect(nextDelayMs(1, [], null)).toBeNull();
  });

  it("honours a Retry-After longer than the schedule, but never a shorter one", () => {
    expect(nextDelayMs(1, schedule, 60_000)).toBe(60_000);
    expect(nextDelayMs(2, schedule, 60_000)).toBe(300_000);
  });

  it("caps Retry-After at 24 hours, so a receiver cannot park a delivery for ever", () => {
    expect(nextDelayMs(1, schedule, 10 * 24 * 3600_000)).toBe(24 * 3600_000);
  });

  it("does not let Retry-After extend an exhausted schedule", () => {
    expect(nextDelayMs(4, schedule, 60_000)).toBeNull();
  });

  it("refuses an attempt count below 1", () => {
    expect(() => nextDelayMs(0, schedule, null)).toThrow(/from 1/);
  });
});
