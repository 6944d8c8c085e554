/**
 * What a store throws when it breaks its own contract (no signing key, an action decided
 * twice) or cannot reach its database: never a client's fault, so never a RejectionError.
 */
import { AppError } from "../../domain/errors.js";

/** `passkey_exists`: a credential id registered twice (a replayed registration). */
export type StoreErrorCode = "store_invariant" | "store_unavailable" | "passkey_exists";

export class StoreError extends AppError<StoreErrorCode> {
  override readonly name = "StoreError";
  constructor(message: string, options?: { readonly cause?: unknown; readonly code?: StoreErrorCode }) {
    super(options?.code ?? "store_invariant", message, options);
  }
}
