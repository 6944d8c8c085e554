/**
 * One level of a route: who may vote, where the card goes, how many approvals decide and
 * how long the level waits, and whether that quorum can ever be reached.
 */
import type { AgentPolicy, ApproverSpec, RouteLevel } from "../types.js";
import { readSlackIds, SLACK_CHANNEL, SLACK_GROUP, SLACK_USER } from "./names.js";
import type { Entry, Path, Reader } from "./yaml.js";

export const LEVEL_KEYS = ["approvers", "channel", "quorum", "timeout", "step_up"];

/** The one kind of step-up there is (SPEC "Step-up"): the approver's own passkey. */
export const STEP_UP_METHODS = ["passkey"] as const;

/**
 * What a level takes from the route (level 0) or from level 0 (escalation levels) unless it
 * sets its own. `step_up` on the route applies to every level; on an escalation entry, to
 * that level only (there is no value that turns it off: a route's step-up covers its ladder).
 */
export interface LevelDefaults {
  readonly channel?: string;
  readonly quorum: number;
  readonly timeout_ms: number;
  readonly step_up?: "passkey";
}

export function readLevel(
  r: Reader,
  raw: unknown,
  path: Path,
  fields: Map<string, Entry>,
  candidates: AgentPolicy[] | null,
  inherited: LevelDefaults,
  isRouteLevel: boolean,
  /** The levels before this one, or null when one of them is broken. */
  earlier: readonly RouteLevel[] | null,
): RouteLevel | undefined {
  const before = r.problems.length;
  let approvers: ApproverSpec | undefined;
  const approversEntry = fields.get("approvers");
  if (!approversEntry) {
    r.report(
      r.deref(raw),
      [...path, "approvers"],
      isRouteLevel
        ? "approvers is required (or make it an auto: approve|deny route)"
        : "approvers is required: who may vote at this level",
      raw,
    );
  } else {
    approvers = readApprovers(r, approversEntry, candidates);
  }

  let channel = inherited.channel;
  const channelEntry = fields.get("channel");
  if (channelEntry) {
    channel = r.name(
      channelEntry.value,
      channelEntry.path,
      SLACK_CHANNEL,
      "a Slack channel id such as C0123ABCD",
    );
  } else if (channel === undefined) {
    r.report(
      r.deref(raw),
      [...path, "channel"],
      "channel is required: the Slack channel id where the card is posted",
      raw,
    );
  }

  let quorum = inherited.quorum;
  const quorumEntry = fields.get("quorum");
  if (quorumEntry) quorum = r.positiveInt(quorumEntry.value, quorumEntry.path) ?? quorum;

  let timeoutMs = inherited.timeout_ms;
  const timeoutEntry = fields.get("timeout");
  if (timeoutEntry) timeoutMs = r.duration(timeoutEntry.value, timeoutEntry.path) ?? timeoutMs;

  let stepUp = inherited.step_up;
  const stepUpEntry = fields.get("step_up");
  if (stepUpEntry) stepUp = r.oneOf(stepUpEntry.value, stepUpEntry.path, STEP_UP_METHODS) ?? stepUp;

  const ownersKnowable = approvers !== undefined && (approvers.owners.length === 0 || candidates !== null);
  if (approvers !== undefined && approvers.groups.length === 0 && ownersKnowable && earlier !== null) {
    const { here, carried } = mostApprovals(approvers, earlier, candidates, stepUp !== undefined);
    if (here + carried < quorum) {
      const listed = `only ${here} approver${here === 1 ? "" : "s"} listed`;
      const carry =
        earlier.length === 0
          ? ""
          : stepUp !== undefined
            ? ", and approvals from earlier levels do not count at a step_up level"
            : carried === 0
              ? ", and no approval carries over from earlier levels"
              : `, and at most ${carried} approval${carried === 1 ? "" : "s"} carr${carried === 1 ? "ies" : "y"} over from earlier levels`;
      r.report(
        quorumEntry ? r.deref(quorumEntry.value) : r.deref(raw),
        [...path, "quorum"],
        `quorum ${quorum} but ${listed}${carry}: this level could never decide`,
        raw,
      );
    }
  }

  if (r.problems.length > before || approvers === undefined || channel === undefined) return undefined;
  return { approvers, channel, quorum, timeout_ms: timeoutMs, ...(stepUp ? { step_up: stepUp } : {}) };
}

/**
 * The most distinct people whose approvals can count towards a level's quorum, for the
 * richest agent the route can match: the level's own approvers (`here`), and approvals
 * carried over from earlier levels (`carried`). Carried approvals come from people named
 * at earlier levels, and are fewer than the highest earlier quorum: reaching a level's
 * quorum would have decided there. Group members are only known at run time, so an
 * earlier group (or earlier owners when the agents are unknown) is taken to supply as
 * many as that bound allows; the level's own groups are the caller's to rule out.
 * At a step-up level nothing carries over: only approvals confirmed with a passkey for
 * that very level count there (SPEC "Step-up"), and a person who voted earlier cannot
 * vote again (src/domain/decision.ts).
 */
function mostApprovals(
  level: ApproverSpec,
  earlier: readonly RouteLevel[],
  candidates: readonly AgentPolicy[] | null,
  stepUp: boolean,
): { here: number; carried: number } {
  const bound = Math.max(0, ...earlier.map((l) => l.quorum - 1));
  const agents: readonly (AgentPolicy | null)[] =
    candidates !== null && candidates.length > 0 ? candidates : [null];
  let best = { here: 0, carried: 0 };
  for (const agent of agents) {
    const named = (spec: ApproverSpec): string[] => [
      ...spec.users,
      ...(agent === null
        ? []
        : spec.owners.flatMap((role) => (Object.hasOwn(agent.owners, role) ? agent.owners[role]! : []))),
    ];
    const here = new Set(named(level));
    const unknown = earlier.some(
      (l) => l.approvers.groups.length > 0 || (agent === null && l.approvers.owners.length > 0),
    );
    const others = unknown
      ? Number.POSITIVE_INFINITY
      : new Set(earlier.flatMap((l) => named(l.approvers)).filter((user) => !here.has(user))).size;
    const carried = stepUp ? 0 : Math.min(bound, others);
    if (here.size + carried > best.here + best.carried) best = { here: here.size, carried };
  }
  return best;
}

function readApprovers(r: Reader, entry: Entry, candidates: AgentPolicy[] | null): ApproverSpec | undefined {
  const fields = r.object(entry.value, entry.path, "the approvers", ["users", "groups", "owners"]);
  if (fields === undefined) return undefined;
  const before = r.problems.length;
  const get = (key: string, pattern: RegExp, what: string): string[] => {
    const e = fields.get(key);
    return e ? (readSlackIds(r, e.value, e.path, pattern, what) ?? []) : [];
  };
  const users = get("users", SLACK_USER, "a Slack user id such as U0123ABCD");
  const groups = get("groups", SLACK_GROUP, "a Slack user group id such as S0123ABCD");
  const owners: string[] = [];
  const ownersEntry = fields.get("owners");
  if (ownersEntry) {
    for (const role of r.strings(ownersEntry.value, ownersEntry.path, "an owner role such as risk") ?? []) {
      if (candidates !== null && !candidates.some((a) => Object.hasOwn(a.owners, role.value))) {
        const whose = candidates.map((a) => a.id).join(", ");
        r.report(
          role.node,
          role.path,
          `owner role "${role.value}" is not defined for any agent this route can match (${whose})`,
        );
      } else if (!owners.includes(role.value)) owners.push(role.value);
    }
  }
  if (r.problems.length > before) return undefined;
  if (users.length + groups.length + owners.length === 0) {
    r.report(r.deref(entry.value), entry.path, "names nobody: give users, groups or owners", entry.keyNode);
    return undefined;
  }
  return { users, groups, owners };
}
