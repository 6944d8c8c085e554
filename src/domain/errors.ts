/**
 * The one base of the server's errors: a stable `code` a caller can branch on, a message
 * that says what failed and where, and the `cause` kept (so a log shows the driver's own
 * error and its stack, not only our sentence). The SDK has its own CountersignError for
 * clients; this one never crosses the wire as is.
 */
export class AppError<C extends string = string> extends Error {
  override readonly name: string = "AppError";
  constructor(
    readonly code: C,
    message: string,
    options?: { readonly cause?: unknown },
  ) {
    super(message, options);
  }
}
