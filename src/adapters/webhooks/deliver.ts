/**
 * One webhook delivery attempt. The host is resolved here, every address
 * it resolves to is checked, and the connection is pinned to the checked address: a DNS
 * answer that changes between check and connect (DNS rebinding) cannot redirect the
 * request to a forbidden address. The outcome of an attempt is data for the retry
 * schedule and the attempt log, so network failures are results, never exceptions.
 */
import { promises as dns, type LookupAddress } from "node:dns";
import http from "node:http";
import https from "node:https";
import { isIP, type LookupFunction } from "node:net";
import { checkAddress } from "./address.js";
import { webhookHeaders } from "./sign.js";

export interface DeliveryRequest {
  url: string;
  /** The agent's `whsec_...` secret. */
  secret: string;
  /** `webhook-id`: the decision id, the same on every attempt. */
  id: string;
  /** The JSON payload, sent byte for byte as signed. */
  body: string;
  /** The callback origin was listed with `allow_private: true`. */
  allowPrivate: boolean;
  /** Limit for the whole attempt, DNS included. Default 10000. */
  timeoutMs?: number;
  /** Clock in epoch milliseconds, for the signature timestamp, durations and Retry-After dates. Default Date.now. */
  now?: () => number;
}

export interface DeliveryResult {
  ok: boolean;
  status: number | null;
  durationMs: number;
  error: string | null;
  /** 410: never retry this delivery */
  stop: boolean;
  /** from Retry-After on 429/503, ms */
  retryAfterMs: number | null;
  /** The address connected to, or the one refused; null when the host did not resolve. */
  address: string | null;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** A receiver's answer body is not used; read a little so the connection ends cleanly, no more. */
const MAX_RESPONSE_BYTES = 64 * 1024;
const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000;

class Deadline extends Error {}

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Deadline()), Math.max(0, ms));
  });
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}

/** Retry-After is delay-seconds or an HTTP-date (RFC 9110 10.2.3). */
function parseRetryAfter(value: string | undefined, nowMs: number): number | null {
  if (value === undefined) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.min(Number(v) * 1000, MAX_RETRY_AFTER_MS);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return null;
  return Math.min(Math.max(0, at - nowMs), MAX_RETRY_AFTER_MS);
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code} (${e.message})` : e.message;
}

/** Sends one signed attempt. Never throws: every failure is a result with `error` set. */
export async function deliverWebhook(r: DeliveryRequest): Promise<DeliveryResult> {
  const now = r.now ?? Date.now;
  const started = now();
  const timeoutMs = r.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const result = (
    fields: Partial<DeliveryResult> & Pick<DeliveryResult, "error" | "address">,
  ): DeliveryResult => ({
    ok: false,
    status: null,
    stop: false,
    retryAfterMs: null,
    durationMs: Math.max(0, now() - started),
    ...fields,
  });

  let url: URL;
  try {
    url = new URL(r.url);
  } catch {
    return result({ error: `callback URL "${r.url}" is not a valid URL`, address: null });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return result({ error: `callback URL scheme ${url.protocol} is not http or https`, address: null });
  }
  if (url.username !== "" || url.password !== "") {
    return result({ error: "callback URL carries a user name or password; refused", address: null });
  }

  let headers: Record<string, string>;
  try {
    headers = webhookHeaders(r.secret, r.id, Math.floor(now() / 1000), r.body);
  } catch (e) {
    return result({ error: `cannot sign the webhook: ${(e as Error).message}`, address: null });
  }

  // URL keeps IPv6 literals in brackets; addresses and lookups use the bare form.
  const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  let addresses: LookupAddress[];
  if (isIP(hostname) !== 0) {
    addresses = [{ address: hostname, family: isIP(hostname) }];
  } else {
    try {
      addresses = await withDeadline(dns.lookup(hostname, { all: true, verbatim: true }), timeoutMs);
    } catch (e) {
      const why = e instanceof Deadline ? `timed out after ${timeoutMs} ms` : describe(e);
      return result({ error: `could not resolve ${hostname}: ${why}`, address: null });
    }
    if (addresses.length === 0) {
      return result({ error: `could not resolve ${hostname}: no addresses`, address: null });
    }
  }
  // Refuse when any address is forbidden, not only the first: which one a client picks
  // is not ours to predict, and a name that mixes public and private answers is suspect.
  for (const a of addresses) {
    const verdict = checkAddress(a.address, r.allowPrivate);
    if (!verdict.ok) {
      return result({ error: `refused ${hostname}: ${verdict.reason}`, address: a.address });
    }
  }
  const target = addresses[0]!;

  // Node asks with `all: true` when it races address families (happy eyeballs); it then
  // gets every address, all of them checked above; otherwise the first one.
  const pinned: LookupFunction = (_host, options, callback) => {
    if ((options as { all?: boolean }).all) {
      (callback as unknown as (err: null, all: LookupAddress[]) => void)(null, addresses);
    } else {
      callback(null, target.address, target.family);
    }
  };

  const remaining = timeoutMs - (now() - started);
  return new Promise<DeliveryResult>((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let req: http.ClientRequest | undefined;
    let response: http.IncomingMessage | undefined;
    let retryAfterMs: number | null = null;
    const settle = (fields: Partial<DeliveryResult> & Pick<DeliveryResult, "error">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Read before destroy: a closed socket no longer knows its peer.
      const address = req?.socket?.remoteAddress ?? target.address;
      req?.destroy();
      resolve(result({ address, status: response?.statusCode ?? null, retryAfterMs, ...fields }));
    };
    const judge = (res: http.IncomingMessage) => {
      const code = res.statusCode ?? 0;
      if (code >= 200 && code < 300) return settle({ ok: true, error: null });
      if (code === 410) {
        return settle({ stop: true, error: "410 Gone: the receiver asked for no more attempts" });
      }
      if (code >= 300 && code < 400) {
        const to = res.headers.location ? ` (Location: ${res.headers.location})` : "";
        return settle({ error: `redirect not followed: ${code}${to}` });
      }
      return settle({ error: `receiver answered ${code}` });
    };

    timer = setTimeout(
      () => {
        // The status line is the answer; a receiver that then stalls its body still answered.
        if (response) return judge(response);
        settle({ error: `timed out after ${timeoutMs} ms` });
      },
      Math.max(0, remaining),
    );
    const client = url.protocol === "https:" ? https : http;
    try {
      req = client.request(
        {
          protocol: url.protocol,
          hostname,
          port: url.port === "" ? undefined : Number(url.port),
          path: `${url.pathname}${url.search}`,
          method: "POST",
          headers: {
            ...headers,
            "content-length": String(Buffer.byteLength(r.body, "utf8")),
            "user-agent": "Countersign-Webhooks/1",
          },
          lookup: pinned,
          // A fresh connection each attempt: a pooled socket would skip the address check.
          agent: false,
          // The certificate is checked against the host name, not the pinned address.
          servername: isIP(hostname) === 0 ? hostname : undefined,
        },
        (res) => {
          response = res;
          if (res.statusCode === 429 || res.statusCode === 503) {
            const h = res.headers["retry-after"];
            retryAfterMs = parseRetryAfter(Array.isArray(h) ? h[0] : h, now());
          }
          let read = 0;
          res.on("data", (chunk: Buffer) => {
            read += chunk.length;
            if (read > MAX_RESPONSE_BYTES) judge(res);
          });
          res.on("end", () => judge(res));
          res.on("error", () => judge(res));
          res.on("close", () => judge(res));
        },
      );
    } catch (e) {
      // Node refuses some header values (a webhook id with a line break) synchronously.
      settle({ error: `cannot send the webhook: ${(e as Error).message}` });
      return;
    }
    req.on("error", (e) => settle({ error: `connection to ${hostname} failed: ${describe(e)}` }));
    req.end(r.body, "utf8");
  });
}

/**
 * The delay before the next attempt, or null when the schedule is exhausted.
 * `attempt` counts attempts made so far (1 after the first); `scheduleMs[i]` is the wait
 * after attempt i + 1. A Retry-After longer than the schedule's delay wins, capped at 24 h
 * so a receiver cannot park a delivery for ever.
 */
export function nextDelayMs(
  attempt: number,
  scheduleMs: readonly number[],
  retryAfterMs: number | null,
): number | null {
  if (!Number.isInteger(attempt) || attempt < 1) {
    throw new RangeError(`attempt counts attempts made, from 1; got ${attempt}`);
  }
  const delay = scheduleMs[attempt - 1];
  if (delay === undefined) return null;
  if (retryAfterMs !== null && retryAfterMs > delay) {
    return Math.max(delay, Math.min(retryAfterMs, MAX_RETRY_AFTER_MS));
  }
  return delay;
}
