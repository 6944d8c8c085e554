/** The HTTP edges of the stand-in: reading a body, decoding a Web API call, answering JSON. */
import type { IncomingMessage, ServerResponse } from "node:http";
import { isObj, type Obj, str } from "./state.js";

/** Fields the web-api client JSON-encodes inside a form body. */
const JSON_FIELDS = ["blocks", "attachments", "metadata", "view"];

export function send(
  res: ServerResponse,
  status: number,
  body: Obj,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
  res.end(JSON.stringify(body));
}

export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

export interface ApiCall {
  /** The arguments, query and body merged, JSON fields decoded, the token taken out. */
  args: Obj;
  token: string | undefined;
  /** Slack's error for a body it cannot read (`invalid_json`, `invalid_form_data`). */
  parseError: string | undefined;
}

/** A Web API call as the web-api client sends it: form or JSON body, token in the header or body. */
export function decodeApiCall(url: URL, req: IncomingMessage, raw: string): ApiCall {
  const contentType = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  let args: Obj = Object.fromEntries(url.searchParams);
  let parseError: string | undefined;
  if (raw.length > 0) {
    if (contentType === "application/json") {
      try {
        const parsed: unknown = JSON.parse(raw);
        if (isObj(parsed)) args = { ...args, ...parsed };
        else parseError = "invalid_json";
      } catch {
        parseError = "invalid_json";
      }
    } else if (contentType === "application/x-www-form-urlencoded" || contentType === "") {
      args = { ...args, ...Object.fromEntries(new URLSearchParams(raw)) };
    } else {
      parseError = "invalid_form_data";
    }
  }
  for (const key of JSON_FIELDS) {
    const value = args[key];
    if (typeof value === "string" && value !== "") {
      try {
        args[key] = JSON.parse(value);
      } catch {
        // Left as the raw string: the handler answers with the method's own format error.
      }
    }
  }
  const auth = req.headers.authorization;
  const token = auth?.startsWith("Bearer ") ? auth.slice("Bearer ".length).trim() : str(args.token);
  delete args.token;
  return { args, token, parseError };
}
