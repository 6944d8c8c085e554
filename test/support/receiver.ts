/** A real local HTTP server that receives webhooks; each answer can be scripted. */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
}

export interface Receiver {
  readonly origin: string;
  readonly port: number;
  readonly received: Received[];
  /** Answers for the next requests, in order; after them, 200. */
  script(...answers: { status: number; headers?: Record<string, string> }[]): void;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  let answers: { status: number; headers?: Record<string, string> }[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      received.push({ headers: req.headers, body, at: Date.now() });
      const a = answers.shift() ?? { status: 200 };
      res.writeHead(a.status, a.headers ?? {});
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    received,
    script: (...a) => {
      answers = a;
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
}
