/**
 * The Slack entry point: Bolt parses and checks the signature; each handler calls one use-case
 * and acknowledges once what it changed is committed (commitThenAck). In HTTP mode Bolt's own HTTPReceiver handles `/slack/events` (its
 * request verification is the reference implementation: signature, 5-minute staleness);
 * with SLACK_APP_TOKEN it uses Socket Mode instead.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  App,
  type BlockAction,
  type ButtonAction,
  HTTPReceiver,
  LogLevel,
  SocketModeReceiver,
  type ViewSubmitAction,
  webApi,
} from "@slack/bolt";
import type { WebClient } from "@slack/web-api";
import type { Logger } from "pino";
import type { Approvals } from "../../app/approvals.js";
import { GrantRefusal, type Grants, mayRevoke } from "../../app/grants.js";
import type { Passkeys } from "../../app/passkeys.js";
import type { Directory, SlackAppStore } from "../../app/ports.js";
import type { Voter } from "../../domain/decision.js";
import {
  ACTION_IDS,
  CALLBACK_IDS,
  CHANGE_FIELD_PREFIX,
  changeFields,
  MODAL_INPUT_IDS,
  parseButtonValue,
  parseModalMetadata,
  readChangeSubmission,
  renderApproveCommentModal,
  renderChangesModal,
  renderDenyModal,
  renderNotApproverNote,
  renderNotCountedNote,
  renderRequestModal,
  renderRevokeModal,
} from "./blocks.js";
import { PASSKEY_ACTION_IDS, renderApprovalsList, renderHome } from "./home.js";

/** Slack allows 3 s for an answer; a commit not done by then is answered with an error. */
const COMMIT_BUDGET_MS = 2_500;
/** How long a click on a card Slack already shows waits for that card to be saved. */
const CARD_WAIT_MS = 1_500;
/** Interactions answered lately, remembered so a re-send is answered at once. */
const ANSWERED_MAX = 10_000;

/** What to tell the person once Slack has been answered (null: nothing). */
type After = (() => Promise<void>) | null;

/**
 * A commit's time to answer Slack. A write not yet begun when it has run out is not begun
 * at all (check() throws), so a person told "not recorded" finds nothing recorded.
 */
interface Budget {
  check(): void;
}

/** An interaction whose vote or refusal could not be committed within the budget. */
export class NotCommitted extends Error {
  override readonly name = "NotCommitted" as const;
  readonly code = "countersign_not_committed" as const;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface SlackAppOptions {
  readonly botToken: string;
  readonly signingSecret: string;
  readonly appToken?: string;
  readonly apiUrl?: string;
  readonly log: Logger;
  readonly store: SlackAppStore;
  readonly directory: (client: WebClient) => Directory;
}

export interface SlackApp {
  readonly client: WebClient;
  readonly directory: Directory;
  /** HTTP mode: the listener for POST /slack/events. Null in Socket Mode. */
  readonly requestListener: ((req: IncomingMessage, res: ServerResponse) => void) | null;
  /** Register the click and modal handlers; the use-cases need the entry point's directory, so they come second. */
  attach(approvals: Approvals, grants?: Grants, passkeys?: Passkeys): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createSlackApp(o: SlackAppOptions): SlackApp {
  const logger = boltLogger(o.log);
  // Our outbox retries with back-off and honours Retry-After itself; the client must
  // not sit in a retry loop of its own, holding a request open for minutes.
  const clientOptions = {
    ...(o.apiUrl ? { slackApiUrl: o.apiUrl } : {}),
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
  };
  // Our own client for everything we send. Bolt is given an `authorize` instead of the
  // token: in single-token mode it calls auth.test at construction and leaves a failure
  // unhandled, so a Slack outage at start-up would crash the process. Here the answer
  // is cached once Slack gives it; until then each event's authorize asks again.
  const client = new webApi.WebClient(o.botToken, clientOptions);
  let identity: Promise<{ botId: string; botUserId: string }> | null = null;
  const authorize = async () => {
    identity ??= client.auth.test().then((r) => ({ botId: r.bot_id ?? "", botUserId: r.user_id ?? "" }));
    try {
      return { botToken: o.botToken, ...(await identity) };
    } catch (err) {
      identity = null;
      throw err;
    }
  };
  let receiver: InstanceType<typeof HTTPReceiver> | null = null;
  let app: InstanceType<typeof App>;
  if (o.appToken) {
    // The socket's own client asks apps.connections.open (with the app-level token) for
    // each connection's URL, at start and after every disconnect Slack asks for. It must
    // reach the same Slack as everything else (SLACK_API_URL), and unlike our client it
    // keeps the web-api's own retries: a reconnect that gives up after one failed call
    // would leave the app deaf until a restart.
    const socketReceiver = new SocketModeReceiver({
      appToken: o.appToken,
      logger,
      installerOptions: { clientOptions: o.apiUrl ? { slackApiUrl: o.apiUrl } : {} },
    });
    app = new App({ authorize, receiver: socketReceiver, socketMode: true, logger, clientOptions });
  } else {
    receiver = new HTTPReceiver({
      signingSecret: o.signingSecret,
      endpoints: "/slack/events",
      logger,
      // The response goes out when a handler calls ack(), which ours do only after the
      // commit (see commitThenAck); holding it until the handler returns would also hold
      // it for the ephemeral notes and modals that follow.
      processBeforeResponse: false,
      unhandledRequestTimeoutMillis: 2_900,
    });
    app = new App({ authorize, receiver, logger, clientOptions });
  }
  const directory = o.directory(client);
  return {
    client,
    directory,
    attach: (approvals, grants, passkeys) =>
      registerHandlers(app, client, directory, approvals, o, grants, passkeys),
    requestListener: receiver ? receiver.requestListener : null,
    async start() {
      if (o.appToken) await app.start();
    },
    async stop() {
      if (o.appToken) await app.stop();
    },
  };
}

function registerHandlers(
  app: InstanceType<typeof App>,
  client: WebClient,
  directory: Directory,
  approvals: Approvals,
  o: SlackAppOptions,
  grants?: Grants,
  passkeys?: Passkeys,
) {
  const { store, log } = o;
  const answered = new Set<string>();

  /** Which card was clicked, checked against our own record of the card. */
  async function clickedCard(body: BlockAction, action: ButtonAction) {
    const parsed = parseButtonValue(action.value ?? "");
    const channel = body.container?.channel_id ?? body.channel?.id;
    const ts = body.container?.message_ts ?? body.message?.ts;
    if (!parsed || !channel || !ts) return null;
    let card = await store.findCardByMessage(channel, ts);
    // Slack shows a card the moment chat.postMessage answers, a little before the card
    // effect has saved which message it is: a click in that gap waits for the save rather
    // than being refused. Only while the card named by the button is still unsaved, so a
    // forged or stale button is refused without waiting.
    if (!card && (await cardBeingPosted(parsed))) {
      const until = Date.now() + CARD_WAIT_MS;
      while (!card && Date.now() < until) {
        await sleep(50);
        card = await store.findCardByMessage(channel, ts);
      }
    }
    // A button names its action, and counts only for the card it was on: a value edited
    // to point at another action, or copied to another message, is refused.
    if (!card || card.actionId !== parsed.actionId || card.level !== parsed.level) return null;
    return { ...parsed, channel, ts };
  }

  async function cardBeingPosted(ref: { actionId: string; level: number }): Promise<boolean> {
    const a = await store.getAction(ref.actionId);
    if (a?.status !== "pending" || a.level !== ref.level || a.eligible === null) return false;
    return !(await store.getCards(ref.actionId)).some((c) => c.level === ref.level);
  }

  /**
   * The card a modal was opened from, named in its private_metadata. It passed through the
   * client, so it is checked again against our own record of the card: null when it names
   * no current card.
   */
  async function modalCard(privateMetadata: string) {
    let meta: { actionId?: string; level?: number; channel?: string; ts?: string };
    try {
      meta = JSON.parse(privateMetadata);
    } catch {
      meta = {};
    }
    const card = meta.channel && meta.ts ? await store.findCardByMessage(meta.channel, meta.ts) : null;
    if (!card || card.actionId !== meta.actionId || card.level !== meta.level) return null;
    // The revision the modal was opened for (absent: 1); checked against the action by the use case.
    const parsed = parseModalMetadata(privateMetadata);
    return { ...card, revision: parsed?.revision ?? 1 };
  }

  /** The note for a refused vote or change: a stale card or revision is not a matter of who you are. */
  function refusalNote(code: string, reason: string): string {
    return code === "stale_revision" || code === "stale_card" || code === "already_decided"
      ? renderNotCountedNote(reason)
      : renderNotApproverNote(reason);
  }

  async function note(channel: string | undefined, user: string, text: string) {
    if (!channel) return;
    try {
      await client.chat.postEphemeral({ channel, user, text });
    } catch (err) {
      log.warn({ err, user }, "slack: could not post an ephemeral note");
    }
  }

  async function voterOf(userId: string, payloadTeam: string | undefined): Promise<Voter> {
    const u = await directory.user(userId);
    const team = payloadTeam && u && payloadTeam !== u.team ? payloadTeam : (u?.team ?? payloadTeam ?? "");
    return {
      user: userId,
      team,
      isGuest: u ? u.isGuest : true,
      ...(u?.email ? { email: u.email } : {}),
      ...(u?.realName ? { realName: u.realName } : {}),
    };
  }

  /**
   * Casts a vote and answers what to tell the person afterwards (null: nothing). A vote
   * already counted writes nothing: a second click gets an "already voted" note, a
   * retry of Slack's (`resent`) not even that.
   */
  async function voteFrom(
    b: Budget,
    userId: string,
    payloadTeam: string | undefined,
    card: { actionId: string; level: number; channel: string; revision?: number },
    vote: "approve" | "deny",
    resent: boolean,
    comment?: string,
  ): Promise<After> {
    if (await approvals.hasVoted(card.actionId, userId)) {
      return resent
        ? null
        : () => note(card.channel, userId, renderNotApproverNote("you have already voted"));
    }
    const voter = await voterOf(userId, payloadTeam);
    b.check();
    if (vote === "approve" && passkeys) {
      const stepUp = await stepUpFrom(voter, card, comment);
      if (stepUp !== undefined) return stepUp;
    }
    const r = await approvals.vote(card.actionId, voter, {
      vote,
      cardLevel: card.level,
      // An approval covers the revision its button or modal showed; a deny denies whatever the revision.
      ...(vote === "approve" && card.revision !== undefined ? { revision: card.revision } : {}),
      ...(comment ? { comment } : {}),
    });
    if (r.kind === "refused") {
      return () => note(card.channel, userId, refusalNote(r.code, r.reason));
    }
    return null;
  }

  /**
   * Approve on a step-up level (SPEC "Step-up") casts nothing: the approver gets a
   * one-time link to the passkey page, or, with no passkey, how to register one.
   * `undefined` when the level needs no step-up (the click votes as usual).
   */
  async function stepUpFrom(
    voter: Voter,
    card: { actionId: string; level: number; channel: string },
    comment?: string,
  ): Promise<After | undefined> {
    const a = passkeys ? await store.getAction(card.actionId) : null;
    if (!passkeys || !a || !passkeys.needsStepUp(a, card.level)) return undefined;
    const r = await passkeys.requestStepUp(card.actionId, voter, {
      cardLevel: card.level,
      ...(comment ? { comment } : {}),
    });
    const text =
      r.kind === "link"
        ? `🔑 This request needs your passkey to approve. Nothing is cast yet: open <${r.url}|this one-time link> (it works once, for 5 minutes) and confirm with your passkey.`
        : r.kind === "no_passkey"
          ? r.message
          : r.kind === "refused"
            ? renderNotApproverNote(r.reason)
            : r.kind === "counted"
              ? renderNotApproverNote("you have already voted")
              : null;
    return text ? () => note(card.channel, voter.user, text) : null;
  }

  /** A click on no current card: the attempt is committed as an event, the note comes after the answer. */
  async function refuseClick(b: Budget, body: BlockAction, why: string): Promise<After> {
    const userId = body.user.id;
    b.check();
    await approvals.refuseUnknownClick(userId, why, {
      value: (body.actions[0] as ButtonAction | undefined)?.value ?? null,
    });
    return () => note(body.container?.channel_id ?? body.channel?.id, userId, renderNotApproverNote(why));
  }

  /**
   * Acknowledge after commit: `commit` writes the vote or the refusal, and only then is
   * Slack answered (HTTP 200, or the Socket Mode ack), so whatever the person was told
   * happened is in the database; a process killed before the answer leaves nothing half
   * done and the person clicks again. Slack allows 3 s: a commit that takes longer than
   * COMMIT_BUDGET_MS is answered with `late` (a modal's `errors`), or, with no `late`,
   * an error status (the handler throws; see app.error), never a silent 200. What to
   * tell the person afterwards (ephemeral notes, a modal) runs after the answer.
   *
   * Retries (X-Slack-Retry-Num) and identical re-sends of an interaction answered here
   * before are answered at once, changing nothing; one that reached another instance, or
   * this one before a restart, finds its vote already counted and writes nothing.
   */
  async function commitThenAck(
    key: string,
    ack: (r?: never) => Promise<void>,
    commit: (b: Budget) => Promise<After>,
    late?: () => Promise<void>,
  ): Promise<void> {
    if (answered.has(key)) return ack();
    let timer: NodeJS.Timeout | undefined;
    let spent = false;
    const work = commit({
      check() {
        if (spent) throw new NotCommitted(`not written: the ${COMMIT_BUDGET_MS} ms to answer Slack ran out`);
      },
    });
    const budget = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), COMMIT_BUDGET_MS);
    });
    let after: After | "late";
    try {
      after = await Promise.race([work, budget]);
    } finally {
      clearTimeout(timer);
    }
    if (after === "late") {
      spent = true;
      work.catch((err: unknown) => {
        if (!(err instanceof NotCommitted)) log.error({ err }, "slack: a late commit failed");
      });
      log.warn({ key }, "slack: could not commit an interaction in time; answered with an error");
      if (late) return late();
      throw new NotCommitted(`could not commit within ${COMMIT_BUDGET_MS} ms`);
    }
    remember(key);
    await ack();
    if (after) await after();
  }

  function remember(key: string) {
    answered.add(key);
    // Bounded: a re-send comes within seconds; Slack gives up retrying within minutes.
    if (answered.size > ANSWERED_MAX) answered.delete(answered.values().next().value as string);
  }

  const clickKey = (body: BlockAction) =>
    `click|${body.user.id}|${(body.actions[0] as ButtonAction | undefined)?.action_ts ?? ""}|${body.container?.message_ts ?? ""}`;

  app.action<BlockAction<ButtonAction>>(ACTION_IDS.approve, async ({ ack, body, action, context }) => {
    await commitThenAck(clickKey(body), ack, async (b) => {
      const card = await clickedCard(body, action);
      if (!card) return refuseClick(b, body, "this button does not belong to a current approval card");
      return voteFrom(b, body.user.id, body.user.team_id, card, "approve", context.retryNum !== undefined);
    });
  });

  // Opening a modal changes nothing, so it is answered before the modal opens; but a
  // click that could never count is refused (and the refusal committed) first, by the
  // same rules a vote is judged by.
  for (const [actionId, render] of [
    [ACTION_IDS.deny, renderDenyModal],
    [ACTION_IDS.approveWithComment, renderApproveCommentModal],
  ] as const) {
    app.action<BlockAction<ButtonAction>>(actionId, async ({ ack, body, action, context }) => {
      let open: { actionId: string; level: number; channel: string; ts: string; revision: number } | null =
        null;
      await commitThenAck(clickKey(body), ack, async (b) => {
        const card = await clickedCard(body, action);
        if (!card) return refuseClick(b, body, "this button does not belong to a current approval card");
        const voter = await voterOf(body.user.id, body.user.team_id);
        const vote = actionId === ACTION_IDS.deny ? "deny" : "approve";
        b.check();
        const may = await approvals.mayVote(card.actionId, voter, {
          vote,
          cardLevel: card.level,
          ...(vote === "approve" ? { revision: card.revision } : {}),
        });
        if (may.kind === "refused") {
          return () => note(card.channel, body.user.id, refusalNote(may.code, may.reason));
        }
        if (may.kind === "counted" && context.retryNum === undefined) {
          return () => note(card.channel, body.user.id, renderNotApproverNote("you have already voted"));
        }
        if (may.kind === "ok") open = card;
        return null;
      });
      const card = open as {
        actionId: string;
        level: number;
        channel: string;
        ts: string;
        revision: number;
      } | null;
      if (!card) return;
      const a = await store.getAction(card.actionId);
      await client.views.open({
        trigger_id: body.trigger_id,
        view: render({
          actionId: card.actionId,
          level: card.level,
          cardChannel: card.channel,
          cardTs: card.ts,
          summary: a?.request.action.summary ?? "",
          revision: card.revision,
        }) as never,
      });
    });
  }

  // "Approve with changes": a click that may not change the request (not an approver, a
  // stale card or revision, a request that lets nobody change it) is refused and the
  // refusal committed before the answer; else the modal opens, filled with the revision
  // the card showed.
  app.action<BlockAction<ButtonAction>>(ACTION_IDS.approveWithChanges, async ({ ack, body, action }) => {
    let open: {
      card: { actionId: string; level: number; channel: string; ts: string; revision: number };
      summary: string;
      fields: ReturnType<typeof changeFields>;
    } | null = null;
    await commitThenAck(clickKey(body), ack, async (b) => {
      const card = await clickedCard(body, action);
      if (!card) return refuseClick(b, body, "this button does not belong to a current approval card");
      const voter = await voterOf(body.user.id, body.user.team_id);
      b.check();
      const may = await approvals.mayChange(card.actionId, voter, {
        cardLevel: card.level,
        revision: card.revision,
      });
      if (may.kind === "not_found") return refuseClick(b, body, "this request is no longer known");
      if (may.kind === "refused")
        return () => note(card.channel, body.user.id, refusalNote(may.code, may.reason));
      open = {
        card,
        summary: may.request.action.summary,
        fields: changeFields({ request: may.request, editable: may.editable }),
      };
      return null;
    });
    const o = open as {
      card: { actionId: string; level: number; channel: string; ts: string; revision: number };
      summary: string;
      fields: ReturnType<typeof changeFields>;
    } | null;
    if (!o) return;
    await client.views.open({
      trigger_id: body.trigger_id,
      view: renderChangesModal({
        actionId: o.card.actionId,
        level: o.card.level,
        cardChannel: o.card.channel,
        cardTs: o.card.ts,
        revision: o.card.revision,
        summary: o.summary,
        fields: o.fields,
      }) as never,
    });
  });

  // Its submission: each value read by its input's kind (a value not of its kind is named
  // in the modal), then the change judged and committed by the use case; a refusal (a
  // forged pointer, a wrong type, a stale revision, another route) comes back in the modal,
  // with nothing changed. Acknowledged only after the change or its refusal is committed.
  app.view<ViewSubmitAction>(CALLBACK_IDS.changes, async ({ ack, body, view }) => {
    const submitted = readChangeSubmission(
      view.state.values as unknown as Record<string, Record<string, unknown>>,
    );
    if (Object.keys(submitted.errors).length) {
      await ack({ response_action: "errors", errors: submitted.errors });
      return;
    }
    const fieldBlocks = Object.keys(view.state.values).filter((k) => k.startsWith(CHANGE_FIELD_PREFIX));
    const userId = body.user.id;
    let errors: Record<string, string> | null = null;
    const refuse = (reason: string, pointer: string | null) => {
      const named = pointer !== null ? `${CHANGE_FIELD_PREFIX}${pointer}` : null;
      // An error must name a block of this modal: the field concerned, else the first field.
      const block =
        named && fieldBlocks.includes(named) ? named : (fieldBlocks[0] ?? MODAL_INPUT_IDS.comment);
      errors = { [block]: `Not changed: ${reason}`.slice(0, 2000) };
    };
    // After a refusal the person corrects the values and submits the same view (same id and
    // hash) again: the values are part of what makes a submission new.
    const values = createHash("sha256").update(JSON.stringify(view.state.values)).digest("base64url");
    await commitThenAck(
      `view|${userId}|${view.id}|${view.hash}|${values}`,
      (() => (errors ? ack({ response_action: "errors", errors }) : ack())) as (r?: never) => Promise<void>,
      async (b) => {
        const card = await modalCard(view.private_metadata);
        if (!card) {
          b.check();
          await approvals.refuseUnknownClick(userId, "the changes modal names no current card", {});
          refuse("this modal belongs to no current approval card", null);
          return null;
        }
        const voter = await voterOf(userId, body.user.team_id ?? undefined);
        b.check();
        const r = await approvals.change(
          card.actionId,
          voter,
          { cardLevel: card.level, revision: card.revision },
          submitted.values,
          submitted.comment || undefined,
        );
        if (r.kind === "refused") {
          refuse(r.reason, r.pointer ?? null);
        } else if (r.kind === "not_found") {
          refuse("this request is no longer known", null);
        } else if (r.action.status === "pending" && !r.action.votes.some((v) => v.user === userId)) {
          // A step-up level: the change is made, and the editor's approval of it waits for
          // their passkey; the link (for the new revision) goes out after the answer.
          return (await stepUpFrom(voter, card, submitted.comment || undefined)) ?? null;
        }
        return null;
      },
      () =>
        ack({
          response_action: "errors",
          errors: {
            [fieldBlocks[0] ?? MODAL_INPUT_IDS.comment]:
              "Your change could not be recorded just now. Please submit again.",
          },
        } as never),
    );
  });

  /** The "View full request" modal: the whole request, paged, and the agent's last 24 hours. */
  async function fullRequestView(actionId: string, page: number) {
    const a = await store.getAction(actionId);
    if (!a) return null;
    const stats = await store.agentStats(a.agentId, Date.now() - 24 * 3600_000);
    return renderRequestModal({
      actionId: a.id,
      request: a.request,
      riskClass: a.riskClass,
      agentOwners: approvals.policy.agents[a.agentId]?.owners ?? {},
      agentLast24h: stats,
      page,
    });
  }

  app.action<BlockAction<ButtonAction>>(ACTION_IDS.viewFull, async ({ ack, body, action }) => {
    let actionId: string | null = null;
    await commitThenAck(clickKey(body), ack, async (b) => {
      const card = await clickedCard(body, action);
      if (!card) return refuseClick(b, body, "this button does not belong to a current approval card");
      actionId = card.actionId;
      return null;
    });
    const view = actionId ? await fullRequestView(actionId, 1) : null;
    if (view) await client.views.open({ trigger_id: body.trigger_id, view: view as never });
  });

  app.action<BlockAction<ButtonAction>>(
    new RegExp(`^${ACTION_IDS.viewPage}_(prev|next)$`),
    async ({ ack, body, action }) => {
      await ack();
      const target = parseButtonValue(action.value ?? "");
      const viewId = body.view?.id;
      if (!target || !viewId) return;
      // Paging shows nothing the first page did not already offer; the value (action id and
      // page) comes from our own modal's button.
      const view = await fullRequestView(target.actionId, target.level);
      if (view) await client.views.update({ view_id: viewId, view: view as never });
    },
  );

  app.command("/approvals", async ({ ack, command }) => {
    const waiting = await store.pendingForApprover(command.user_id, 50);
    const listed = await Promise.all(
      waiting.map(async (a) => ({ action: a, permalink: await permalinkOf(a.id, a.level) })),
    );
    const { text, blocks } = renderApprovalsList(listed);
    await ack({ response_type: "ephemeral", text, blocks: blocks as never });
  });

  async function publishHome(user: string) {
    const ownedAgents = Object.values(approvals.policy.agents)
      .filter((ag) => Object.values(ag.owners).some((ids) => ids.includes(user)))
      .map((ag) => ag.id);
    const [waiting, decided, owned, keys] = await Promise.all([
      store.pendingForApprover(user, 30),
      store.recentlyVotedBy(user, 25),
      store.recentForAgents(ownedAgents, 30),
      passkeys ? passkeys.list(user) : Promise.resolve(null),
    ]);
    const withLinks = await Promise.all(
      waiting.map(async (a) => ({ action: a, permalink: await permalinkOf(a.id, a.level) })),
    );
    await client.views.publish({
      user_id: user,
      view: renderHome({
        waiting: withLinks,
        decided: decided.map((a) => ({ action: a })),
        owned: owned.map((a) => ({ action: a })),
        ...(keys ? { passkeys: keys } : {}),
      }) as never,
    });
  }

  app.event("app_home_opened", async ({ event }) => {
    if (event.tab !== "home") return;
    await publishHome(event.user);
  });

  if (passkeys) registerPasskeyButtons(passkeys);

  /** App Home's passkey buttons: a one-time registration link by DM; Remove, then the home redrawn. */
  function registerPasskeyButtons(p: Passkeys) {
    app.action<BlockAction<ButtonAction>>(PASSKEY_ACTION_IDS.register, async ({ ack, body }) => {
      // The link is committed before the answer; the DM carrying it follows.
      await commitThenAck(clickKey(body), ack, async () => {
        const link = await p.registrationLink(body.user.id);
        return async () => {
          try {
            await client.chat.postMessage({
              channel: body.user.id,
              text: `🔑 Register a passkey for Countersign: open <${link.url}|this one-time link> (it works once, for 10 minutes). Routes marked step-up need it to approve.`,
            });
          } catch (err) {
            log.warn({ err, user: body.user.id }, "slack: could not send the passkey registration link");
          }
        };
      });
    });
    app.action<BlockAction<ButtonAction>>(PASSKEY_ACTION_IDS.remove, async ({ ack, body, action }) => {
      await commitThenAck(clickKey(body), ack, async () => {
        await p.remove(body.user.id, action.value ?? "");
        return () =>
          publishHome(body.user.id).catch((err: unknown) =>
            log.warn({ err, user: body.user.id }, "slack: could not redraw App Home"),
          );
      });
    });
  }

  async function permalinkOf(actionId: string, level: number): Promise<string | null> {
    const card = (await store.getCards(actionId)).find((c) => c.level === level);
    if (!card) return null;
    try {
      const r = await client.chat.getPermalink({ channel: card.channel, message_ts: card.ts });
      return r.permalink ?? null;
    } catch {
      return null;
    }
  }

  for (const [callbackId, field, vote] of [
    [CALLBACK_IDS.deny, "reason", "deny"],
    [CALLBACK_IDS.approveComment, "comment", "approve"],
  ] as const) {
    app.view<ViewSubmitAction>(callbackId, async ({ ack, body, view, context }) => {
      const text = (view.state.values[field]?.[field]?.value ?? "").trim();
      if (!text) {
        await ack({
          response_action: "errors",
          errors: { [field]: vote === "deny" ? "Say why you deny it." : "Add a comment." },
        });
        return;
      }
      const userId = body.user.id;
      await commitThenAck(
        `view|${userId}|${view.id}|${view.hash}`,
        ack as (r?: never) => Promise<void>,
        async (b) => {
          const card = await modalCard(view.private_metadata);
          if (!card) {
            b.check();
            await approvals.refuseUnknownClick(userId, "the modal names no current card", { vote });
            return null;
          }
          return voteFrom(
            b,
            userId,
            body.user.team_id ?? undefined,
            { ...card },
            vote,
            context.retryNum !== undefined,
            text.slice(0, 1000),
          );
        },
        () =>
          ack({
            response_action: "errors",
            errors: { [field]: "Your vote could not be recorded just now. Please submit again." },
          }),
      );
    });
  }

  if (grants) registerRevoke(grants);

  /**
   * Revoke, on a decided approval's card: the last level's eligible approvers and the
   * agent's owners get a modal asking for a reason. Its submission is acknowledged only
   * once the revocation, or its refusal, is committed; a refusal's note follows the ack.
   */
  function registerRevoke(g: Grants) {
    const notAllowed = "only the last level's approvers and the agent's owners may revoke this approval";

    // Opening the modal changes nothing, so it follows the answer; a click that may not
    // revoke is refused, and the refusal committed, before it.
    app.action<BlockAction<ButtonAction>>(ACTION_IDS.revoke, async ({ ack, body, action }) => {
      let open: { actionId: string; level: number; channel: string; ts: string; summary: string } | null =
        null;
      await commitThenAck(clickKey(body), ack, async (b) => {
        const card = await clickedCard(body, action);
        if (!card) return refuseClick(b, body, "this button does not belong to a current approval card");
        const a = await store.getAction(card.actionId);
        if (!a || !mayRevoke(approvals.policy, a, body.user.id)) {
          b.check();
          await g.refuseRevoke(card.actionId, body.user.id, notAllowed);
          return () => note(card.channel, body.user.id, renderNotApproverNote(notAllowed));
        }
        open = { ...card, summary: a.request.action.summary };
        return null;
      });
      const card = open as {
        actionId: string;
        level: number;
        channel: string;
        ts: string;
        summary: string;
      } | null;
      if (!card) return;
      await client.views.open({
        trigger_id: body.trigger_id,
        view: renderRevokeModal({
          actionId: card.actionId,
          level: card.level,
          cardChannel: card.channel,
          cardTs: card.ts,
          summary: card.summary,
        }) as never,
      });
    });

    app.view<ViewSubmitAction>(CALLBACK_IDS.revoke, async ({ ack, body, view }) => {
      const field = MODAL_INPUT_IDS.reason;
      const text = (view.state.values[field]?.[field]?.value ?? "").trim();
      if (!text) {
        await ack({ response_action: "errors", errors: { [field]: "Say why you revoke it." } });
        return;
      }
      const userId = body.user.id;
      await commitThenAck(
        `view|${userId}|${view.id}|${view.hash}`,
        ack as (r?: never) => Promise<void>,
        async (b) => {
          const card = await modalCard(view.private_metadata);
          if (!card) {
            b.check();
            await approvals.refuseUnknownClick(userId, "the revoke modal names no current card", {});
            return null;
          }
          const a = await store.getAction(card.actionId);
          if (!a || !mayRevoke(approvals.policy, a, userId)) {
            b.check();
            await g.refuseRevoke(card.actionId, userId, notAllowed);
            return () => note(card.channel, userId, renderNotApproverNote(notAllowed));
          }
          const u = await directory.user(userId);
          b.check();
          try {
            await g.revoke(
              card.actionId,
              { user: userId, team: body.user.team_id ?? u?.team ?? "" },
              text.slice(0, 1000),
            );
            return null;
          } catch (e) {
            // A refusal is committed (as its event) and told after the answer; anything else
            // (the database away) is not answered 200: the person sees an error.
            if (!(e instanceof GrantRefusal)) throw e;
            const why = e.message;
            return () => note(card.channel, userId, `Not revoked: ${why}`);
          }
        },
        () =>
          ack({
            response_action: "errors",
            errors: { [field]: "The revocation could not be recorded just now. Please submit again." },
          } as never),
      );
    });
  }

  app.error(async (err) => {
    log.error({ err }, "slack: handler failed");
    // Thrown on to the receiver: a handler that failed before its answer gets an error
    // status (HTTP 500; in Socket Mode no ack, so Slack sends it again), never a 200.
    // After the answer the receiver only logs it.
    throw err;
  });
}

function boltLogger(log: Logger) {
  const child = log.child({ part: "bolt" });
  return {
    debug: (...m: unknown[]) => child.debug(m.map(String).join(" ")),
    info: (...m: unknown[]) => child.info(m.map(String).join(" ")),
    warn: (...m: unknown[]) => child.warn(m.map(String).join(" ")),
    error: (...m: unknown[]) => child.error(m.map(String).join(" ")),
    setLevel: () => {},
    getLevel: () => LogLevel.INFO,
    setName: () => {},
  };
}
