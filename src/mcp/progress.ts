/**
 * Progress while a tool call waits for people: the MCP server's `request_approval` and the
 * gateway's held calls both send one notification at once and one every `everyMs`, when
 * the client gave a progressToken. A client with a request timeout (the TypeScript SDK's
 * 60 s) resets it on each one (docs/mcp.md).
 */
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { ServerNotification, ServerRequest } from "@modelcontextprotocol/sdk/types.js";

export type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** Starts ticking; the returned function stops it. */
export function startProgress(
  extra: Extra,
  everyMs: number,
  o: { readonly message: string; readonly total?: number; readonly onError?: (e: Error) => void },
): () => void {
  const progressToken = extra._meta?.progressToken;
  if (progressToken === undefined) return () => {};
  const started = Date.now();
  let last = -1;
  const tick = () => {
    // Progress must grow with each notification; whole seconds waited do, at this pace.
    const progress = Math.max(last + 1, Math.floor((Date.now() - started) / 1000));
    last = progress;
    extra
      .sendNotification({
        method: "notifications/progress",
        params: {
          progressToken,
          progress,
          ...(o.total !== undefined ? { total: o.total } : {}),
          message: o.message,
        },
      })
      .catch((e: unknown) => o.onError?.(e as Error));
  };
  tick();
  const timer = setInterval(tick, everyMs);
  return () => clearInterval(timer);
}
