/**
 * Reading Countersign's answers, shared by the SDK's HTTP calls: a body is a JSON object
 * or nothing, and a refusal is problem+json whose `code` says what was wrong.
 */
import type { FieldError } from "../domain/types.js";
import { Rejected, TransportError } from "./errors.js";

/** The body as a JSON object, or null when it is not one (an HTML error page, nothing). */
export function jsonObject(text: string): Record<string, unknown> | null {
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

/** A refusal of an agent's call as the error it stands for: Rejected with its code, or a TransportError. */
export function agentCallError(where: string, status: number, json: Record<string, unknown> | null): Error {
  const detail = typeof json?.["detail"] === "string" ? json["detail"] : null;
  // 5xx (503 while Redis or the database is down) says nothing about the request itself.
  if (status >= 500) {
    return new TransportError(`${where} answered ${status}${detail ? `: ${detail}` : ""}`, status);
  }
  const code = json?.["code"];
  if (typeof code === "string") {
    const errors = Array.isArray(json?.["errors"]) ? (json["errors"] as FieldError[]) : [];
    return new Rejected(code, detail ?? `HTTP ${status}`, errors);
  }
  return new TransportError(`${where} answered ${status} without a problem+json body`, status);
}
