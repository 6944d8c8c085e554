/**
 * Slack's Socket Mode side, for the simulator: `apps.connections.open` hands out a one-use
 * `ws://` URL on the simulator's own port; a connection gets `hello`; what a person does
 * goes out as an envelope (`interactive`, `slash_commands`, `events_api`) with an
 * `envelope_id`, and the app's ack (`{envelope_id, payload?}`) comes back to whoever sent
 * it, as the HTTP response body does on the Request URL path.
 *
 * What Slack does and this models:
 * - An envelope not acked within the ack window (3 s, as on HTTP) is sent again, with
 *   `retry_attempt` and `retry_reason`, possibly on another of the app's connections.
 *   An envelope that finds no open connection waits for one within the same window.
 * - `disconnect` (reason `refresh_requested`, as when Slack recycles a server) makes the
 *   app close and open a fresh connection through `apps.connections.open`.
 * - The app may hold several connections; envelopes go round them in turn.
 *
 * The WebSocket framing is the `ws` package's: the app's client is undici's WebSocket,
 * which pings every few seconds and drops a peer that does not answer.
 */
import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import { type WebSocket, WebSocketServer } from "ws";

/** The envelope types an app receives; `hello` and `disconnect` are control messages. */
export type EnvelopeType = "interactive" | "slash_commands" | "events_api";

/** What Slack writes on the socket for one delivery of an envelope. */
export interface SocketEnvelope {
  envelope_id: string;
  type: EnvelopeType;
  payload: Record<string, unknown>;
  accepts_response_payload: boolean;
  retry_attempt?: number;
  retry_reason?: string;
}

/** One envelope's life, for tests: each attempt, and the ack if one came. */
export interface EnvelopeRecord {
  envelope_id: string;
  type: EnvelopeType;
  payload: Record<string, unknown>;
  /** How many times it was written to a socket (1 + re-sends). */
  attempts: number;
  /** The ack's payload (`{}` when the app acked with none); undefined while unacked. */
  ack?: Record<string, unknown>;
  /** Given up: never acked within the attempts allowed. */
  failed?: boolean;
  /** Which connection the ack came on: 1 for the first the simulator accepted, and so on. */
  ackedOn?: number;
}

export interface SocketModeOptions {
  /** The app-level token (`xapp-...`) that `apps.connections.open` accepts. */
  appToken: string;
  appId: string;
  /** How long Slack waits for an ack before it sends the envelope again. Default 3000 ms. */
  ackTimeoutMs?: number;
  /** Re-sends after the first attempt before Slack gives up. Default 3. */
  retries?: number;
}

/** The result of a delivery, shaped as an HTTP answer so callers treat both paths alike. */
export interface Delivery {
  /** 200 once acked. */
  status: number;
  /** The ack's payload as JSON, or "" when it carried none (as an empty 200 body). */
  body: string;
  envelopeId: string;
}

interface Pending {
  resolve: (payload: Record<string, unknown>) => void;
}

export class SocketModeSim {
  /** Every envelope in the order first sent. */
  readonly envelopes: EnvelopeRecord[] = [];
  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly tickets = new Set<string>();
  private readonly open: WebSocket[] = [];
  private readonly ids = new WeakMap<WebSocket, number>();
  private readonly pending = new Map<string, Pending>();
  private readonly connectWaiters = new Set<() => void>();
  private readonly ackListeners = new Set<(r: EnvelopeRecord) => void>();
  private readonly sendListeners = new Set<(e: SocketEnvelope) => void>();
  private next = 0;
  private connections = 0;
  private closed = false;
  /** While set, acks are read and dropped, as if lost on the way: Slack then re-sends. */
  dropAcks = false;

  constructor(
    private readonly options: SocketModeOptions,
    server: Server,
    private readonly wsOrigin: string,
  ) {
    server.on("upgrade", (req, socket, head) => this.upgrade(req, socket, head));
  }

  get appToken(): string {
    return this.options.appToken;
  }

  /** How many of the app's connections are open now. */
  get openConnections(): number {
    return this.open.length;
  }

  /** How many connections were ever accepted; the newest one's number (see `ackedOn`). */
  get acceptedConnections(): number {
    return this.connections;
  }

  /** The `apps.connections.open` answer: a fresh one-use URL. */
  connectionsOpen(): Record<string, unknown> {
    const ticket = randomUUID();
    this.tickets.add(ticket);
    return { ok: true, url: `${this.wsOrigin}/link/?ticket=${ticket}&app_id=${this.options.appId}` };
  }

  /** Resolves once the app has at least `n` open connections (it got `hello`). */
  async waitForConnection(timeoutMs = 20_000, n = 1): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.open.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `Slack simulator: waited ${timeoutMs} ms for ${n} Socket Mode connection(s), ${this.open.length} open ` +
            `(${this.connections} ever opened)`,
        );
      }
      await this.connectionOrTimeout(left);
    }
  }

  /**
   * Sends `{type: "disconnect", reason}` on every open connection (Slack asks this of an
   * app before it recycles a server); a well-behaved app closes and reconnects.
   */
  disconnect(reason = "refresh_requested"): number {
    const msg = JSON.stringify({ type: "disconnect", reason, debug_info: { host: "countersign-sim" } });
    const sockets = [...this.open];
    for (const ws of sockets) ws.send(msg);
    return sockets.length;
  }

  /** Calls `listener` after each ack is read (before the sender hears of it); returns an unsubscribe. */
  onAck(listener: (r: EnvelopeRecord) => void): () => void {
    this.ackListeners.add(listener);
    return () => this.ackListeners.delete(listener);
  }

  /** Calls `listener` after each envelope is written to a socket; returns an unsubscribe. */
  onSend(listener: (e: SocketEnvelope) => void): () => void {
    this.sendListeners.add(listener);
    return () => this.sendListeners.delete(listener);
  }

  /**
   * Delivers one envelope and waits for its ack, re-sending on silence as Slack does.
   * Rejects, naming the envelope, when no ack came within all attempts.
   */
  async deliver(
    type: EnvelopeType,
    payload: Record<string, unknown>,
    delivery: { acceptsResponsePayload: boolean },
  ): Promise<Delivery> {
    const record: EnvelopeRecord = { envelope_id: randomUUID(), type, payload, attempts: 0 };
    this.envelopes.push(record);
    const ackTimeoutMs = this.options.ackTimeoutMs ?? 3000;
    const attempts = 1 + (this.options.retries ?? 3);
    const acked = new Promise<Record<string, unknown>>((resolve) => {
      this.pending.set(record.envelope_id, { resolve });
    });
    try {
      for (let attempt = 0; attempt < attempts && !this.closed; attempt++) {
        const deadline = Date.now() + ackTimeoutMs;
        const ws = await this.pick(deadline);
        if (ws) {
          const envelope: SocketEnvelope = {
            envelope_id: record.envelope_id,
            type,
            payload,
            accepts_response_payload: delivery.acceptsResponsePayload,
          };
          if (attempt > 0) {
            envelope.retry_attempt = attempt;
            envelope.retry_reason = "timeout";
          }
          ws.send(JSON.stringify(envelope));
          record.attempts += 1;
          for (const listener of this.sendListeners) listener(envelope);
        }
        const ack = await within(acked, deadline - Date.now());
        if (ack) {
          return {
            status: 200,
            body: Object.keys(ack).length === 0 ? "" : JSON.stringify(ack),
            envelopeId: record.envelope_id,
          };
        }
      }
      record.failed = true;
      throw new Error(
        `Slack simulator: the app never acked ${type} envelope ${record.envelope_id} ` +
          `(${record.attempts} sent, ${this.open.length} connection(s) open)`,
      );
    } finally {
      this.pending.delete(record.envelope_id);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const ws of this.open) ws.terminate();
    this.open.length = 0;
    for (const w of this.connectWaiters) w();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  // ---- the socket -----------------------------------------------------------------

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? "/", "http://sim");
    const ticket = url.searchParams.get("ticket") ?? "";
    // A URL from apps.connections.open is good for one connection, as Slack's are.
    if (url.pathname !== "/link/" || !this.tickets.delete(ticket) || this.closed) {
      socket.end("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n");
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws));
  }

  private accept(ws: WebSocket): void {
    this.connections += 1;
    this.ids.set(ws, this.connections);
    this.open.push(ws);
    ws.on("message", (data, isBinary) => {
      if (!isBinary) this.read(ws, String(data));
    });
    ws.on("close", () => this.forget(ws));
    ws.on("error", () => this.forget(ws));
    ws.send(
      JSON.stringify({
        type: "hello",
        num_connections: this.open.length,
        debug_info: {
          host: `countersign-sim-${randomBytes(3).toString("hex")}`,
          build_number: 1,
          approximate_connection_time: 18060,
        },
        connection_info: { app_id: this.options.appId },
      }),
    );
    for (const w of [...this.connectWaiters]) w();
  }

  private forget(ws: WebSocket): void {
    const i = this.open.indexOf(ws);
    if (i >= 0) this.open.splice(i, 1);
  }

  /** An app's message: only acks mean anything; anything else is ignored, as Slack does. */
  private read(ws: WebSocket, text: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof msg !== "object" || msg === null) return;
    const { envelope_id, payload } = msg as { envelope_id?: unknown; payload?: unknown };
    if (typeof envelope_id !== "string" || this.dropAcks) return;
    const record = this.envelopes.find((e) => e.envelope_id === envelope_id);
    if (!record || record.ack !== undefined) return;
    record.ack =
      typeof payload === "object" && payload !== null && !Array.isArray(payload)
        ? (payload as Record<string, unknown>)
        : {};
    record.ackedOn = this.ids.get(ws);
    for (const listener of this.ackListeners) listener(record);
    this.pending.get(envelope_id)?.resolve(record.ack);
  }

  /** The next open connection in turn, waiting for one until `deadline`. */
  private async pick(deadline: number): Promise<WebSocket | undefined> {
    for (;;) {
      const live = this.open.filter((ws) => ws.readyState === ws.OPEN);
      if (live.length > 0) {
        this.next = (this.next + 1) % live.length;
        return live[this.next];
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) return undefined;
      await this.connectionOrTimeout(left);
    }
  }

  private connectionOrTimeout(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.connectWaiters.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.connectWaiters.add(done);
    });
  }
}

/** The promise's value, or undefined once `ms` has passed; the timer never outlives it. */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    t = setTimeout(() => resolve(undefined), Math.max(0, ms));
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}
