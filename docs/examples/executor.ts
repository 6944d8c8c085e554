// executor.ts: a payments service that refuses to refund without a redeemed grant.
// Run with: npx tsx docs/examples/executor.ts   (see docs/agents.md, "For the service that executes")
//
// POST /refunds takes {record, request}: the decision record the agent got from
// Countersign and the request it approved. The refund runs only after Countersign has
// committed the redemption, so one approval pays out once, before its valid_until, and
// never after a revocation; then the outcome is reported, and both are in the audit log.
import { readFileSync } from "node:fs";
import http from "node:http";
import { pathToFileURL } from "node:url";
import {
  type ActionRequest,
  AlreadyRedeemed,
  type ExecutorOptions,
  GrantRefused,
  InvalidReceipt,
  InvalidRecord,
  type JWKS,
  redeemGrant,
  reportOutcome,
} from "@countersign/sdk";

/** The refund itself; returns the payment provider's reference. */
export type Refund = (details: Readonly<Record<string, unknown>>) => Promise<string>;

export function executorHandler(o: ExecutorOptions, refund: Refund): http.RequestListener {
  const answer = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  return (req, res) => {
    if (req.method !== "POST" || req.url !== "/refunds") return answer(res, 404, { error: "not found" });
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      text += chunk;
    });
    req.on("end", async () => {
      let record: string;
      let request: ActionRequest;
      try {
        ({ record, request } = JSON.parse(text) as { record: string; request: ActionRequest });
      } catch {
        return answer(res, 400, { error: "expected {record, request}" });
      }
      if (request?.action?.type !== "payments.refund") {
        return answer(res, 400, { error: "this service only refunds" });
      }
      let actionId: string;
      try {
        // Offline checks first (signature, issuer, digest, verdict, valid_until), then the
        // redemption: after this line the approval is used up, whatever happens next.
        ({ action_id: actionId } = await redeemGrant(record, request, o));
      } catch (e) {
        if (e instanceof AlreadyRedeemed) return answer(res, 409, { error: e.message, receipt: e.receipt });
        if (e instanceof GrantRefused) return answer(res, e.status, { error: e.message, code: e.code });
        if (e instanceof InvalidRecord || e instanceof InvalidReceipt)
          return answer(res, 400, { error: e.message });
        // Countersign unreachable: nothing is known, so nothing runs. The caller may retry.
        return answer(res, 503, { error: (e as Error).message });
      }
      let reference: string;
      try {
        reference = await refund(request.action.details ?? {});
      } catch (e) {
        await reportOutcome(actionId, "failed", (e as Error).message.slice(0, 1000), o).catch(() => {});
        return answer(res, 502, { error: "the refund failed; the approval is used up: ask again" });
      }
      await reportOutcome(actionId, "succeeded", `refund ${reference}`, o).catch(() => {});
      return answer(res, 200, { action_id: actionId, reference });
    });
  };
}

// Run directly: the executor's id, secret and the pinned JWKS from the environment.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const env = (name: string): string => {
    const v = process.env[name];
    if (!v) throw new Error(`set ${name}`);
    return v;
  };
  const options: ExecutorOptions = {
    identity: {
      executorId: process.env["EXECUTOR_ID"] ?? "payments-api",
      issuer: env("COUNTERSIGN_ISSUER"),
      key: { hmacSecret: env("PAYMENTS_EXECUTOR_SECRET") },
    },
    baseUrl: process.env["COUNTERSIGN_URL"] ?? "http://127.0.0.1:3000",
    jwks: JSON.parse(readFileSync(process.env["JWKS_FILE"] ?? "jwks.json", "utf8")) as JWKS,
  };
  const port = Number(process.env["PORT"] ?? 8080);
  http
    .createServer(executorHandler(options, async (details) => `re_${String(details["order"] ?? "demo")}`))
    .listen(port, "127.0.0.1", () => console.log(`executor listening on http://127.0.0.1:${port}/refunds`));
}
