/**
 * The action row as both stores keep it: the SQLite and PostgreSQL schemas name and type
 * these columns alike (times as numbers of ms, JSON as text), so one mapping serves both.
 */
import type { ActionRow, NewAction } from "../../app/ports.js";

export interface ActionColumns {
  id: string;
  agentId: string;
  requestId: string;
  requestJson: string;
  requestSha256: string;
  actionType: string;
  riskClass: string;
  region: string;
  status: string;
  routeName: string | null;
  level: number;
  quorum: number;
  eligibleJson: string | null;
  deadlineAt: number | null;
  capAt: number | null;
  policySha256: string;
  requestedAt: number;
  verdict: string | null;
  reasonCode: string | null;
  decidedAt: number | null;
  recordSeq: number | null;
  revision: number;
}

/** The columns of a newly admitted action (pending, no verdict yet). */
export function actionValues(
  a: NewAction,
): Omit<ActionColumns, "verdict" | "reasonCode" | "decidedAt" | "recordSeq" | "revision"> {
  return {
    id: a.id,
    agentId: a.agentId,
    requestId: a.requestId,
    requestJson: JSON.stringify(a.request),
    requestSha256: a.requestSha256,
    actionType: a.actionType,
    riskClass: a.riskClass,
    region: a.region,
    status: "pending",
    routeName: a.routeName,
    level: a.level,
    quorum: a.quorum,
    eligibleJson: a.eligible === null ? null : JSON.stringify(a.eligible),
    deadlineAt: a.deadlineAt,
    capAt: a.capAt,
    policySha256: a.policySha256,
    requestedAt: a.requestedAt,
  };
}

export function toRow(r: ActionColumns): ActionRow {
  return {
    id: r.id,
    agentId: r.agentId,
    requestId: r.requestId,
    request: JSON.parse(r.requestJson),
    requestSha256: r.requestSha256,
    actionType: r.actionType,
    riskClass: r.riskClass,
    region: r.region,
    status: r.status as ActionRow["status"],
    routeName: r.routeName,
    level: r.level,
    quorum: r.quorum,
    eligible: r.eligibleJson === null ? null : (JSON.parse(r.eligibleJson) as string[]),
    deadlineAt: r.deadlineAt,
    capAt: r.capAt,
    policySha256: r.policySha256,
    requestedAt: r.requestedAt,
    verdict: r.verdict as ActionRow["verdict"],
    reasonCode: r.reasonCode as ActionRow["reasonCode"],
    decidedAt: r.decidedAt,
    recordSeq: r.recordSeq,
    revision: r.revision,
  };
}
