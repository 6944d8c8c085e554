/**
 * The Slack door: Bolt parses, checks the signature and acknowledges; each handler then
 * calls one use-case. In HTTP mode Bolt's own HTTPReceiver handles `/slack/events` (its
 * request verification is the reference implementation: signature, 5-minute staleness);
 * with SLACK_APP_TOKEN it uses Socket Mode instead.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  App,
  type BlockAction,
  type ButtonAction,
  HTTPReceiver,
  LogLevel,
  type ViewSubmitAction,
  webApi,
} from "@slack/bolt";
import type { WebClient } from "@slack/web-api";
import type { Logger } from "pino";
import type { Approvals, Directory } from "../../app/approvals.js";
import { GrantRefusal, type Grants, mayRevoke } from "../../app/grants.js";
import type { Store } from "../../app/ports.js";
import { GRANT_EVENTS } from "../../audit/events.js";
import {
  ACTION_IDS,
  CALLBACK_IDS,
  MODAL_INPUT_IDS,
  parseButtonValue,
  renderApproveCommentModal,
  renderDenyModal,
  renderNotApproverNote,
  renderRequestModal,
  renderRevokeModal,
} from "./blocks.js";
import { renderApprovalsList, renderHome } from "./home.js";

export interface SlackDoorOptions {
  readonly botToken: string;
  readonly signingSecret: string;
  readonly appToken?: string;
  readonly apiUrl?: string;
  readonly log: Logger;
  readonly store: Store;
  readonly directory: (client: WebClient) => Directory;
}

export interface SlackDoor {
  readonly client: WebClient;
  readonly directory: Directory;
  /** HTTP mode: the listener for POST /slack/events. Null in Socket Mode. */
  readonly requestListener: ((req: IncomingMessage, res: ServerResponse) => void) | null;
  /** Register the click and modal handlers; the use-cases need the door's directory, so they come second. */
  attach(approvals: Approvals, grants?: Grants): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createSlackDoor(o: SlackDoorOptions): SlackDoor {
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
    app = new App({ authorize, appToken: o.appToken, socketMode: true, logger, clientOptions });
  } else {
    receiver = new HTTPReceiver({
      signingSecret: o.signingSecret,
      endpoints: "/slack/events",
      logger,
      // Acknowledge first, work after: Slack wants an answer within 3 seconds.
      processBeforeResponse: false,
      unhandledRequestTimeoutMillis: 2_900,
    });
    app = new App({ authorize, receiver, logger, clientOptions });
  }
  const directory = o.directory(client);
  return {
    client,
    directory,
    attach: (approvals, grants) => registerHandlers(app, client, directory, approvals, o, grants),
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
  o: SlackDoorOptions,
  grants?: Grants,
) {
  const { store, log } = o;

  /** Which card was clicked, checked against our own record of the card. */
  async function clickedCard(body: BlockAction, action: ButtonAction) {
    const parsed = parseButtonValue(action.value ?? "");
    const channel = body.container?.channel_id ?? body.channel?.id;
    const ts = body.container?.message_ts ?? body.message?.ts;
    if (!parsed || !channel || !ts) return null;
    const card = await store.findCardByMessage(channel, ts);
    // A button names its action, and counts only for the card it was on: a value edited
    // to point at another action, or copied to another message, is refused.
    if (!card || card.actionId !== parsed.actionId || card.level !== parsed.level) return null;
    return { ...parsed, channel, ts };
  }

  async function note(channel: string | undefined, user: string, text: string) {
    if (!channel) return;
    try {
      await client.chat.postEphemeral({ channel, user, text });
    } catch (err) {
      log.warn({ err, user }, "slack: could not post an ephemeral note");
    }
  }

  async function voteFrom(
    userId: string,
    payloadTeam: string | undefined,
    card: { actionId: string; level: number; channel: string },
    vote: "approve" | "deny",
    comment?: string,
  ) {
    const u = await directory.user(userId);
    const team = payloadTeam && u && payloadTeam !== u.team ? payloadTeam : (u?.team ?? payloadTeam ?? "");
    const r = await approvals.vote(
      card.actionId,
      {
        user: userId,
        team,
        isGuest: u ? u.isGuest : true,
        ...(u?.email ? { email: u.email } : {}),
        ...(u?.realName ? { realName: u.realName } : {}),
      },
      { vote, cardLevel: card.level, ...(comment ? { comment } : {}) },
    );
    if (r.kind === "refused") await note(card.channel, userId, renderNotApproverNote(r.reason));
    return r;
  }

  async function refuseClick(body: BlockAction, why: string) {
    const userId = body.user.id;
    await store.appendEvents(
      null,
      null,
      [
        {
          type: "vote_refused",
          actor: `slack:${userId}`,
          data: {
            code: "unknown_card",
            reason: why,
            value: (body.actions[0] as ButtonAction | undefined)?.value ?? null,
          },
        },
      ],
      Date.now(),
    );
    await note(body.container?.channel_id ?? body.channel?.id, userId, renderNotApproverNote(why));
  }

  /** Before opening a modal: only someone who could vote now gets one. */
  async function mayVote(card: { actionId: string; level: number }, userId: string): Promise<string | null> {
    const a = await store.getAction(card.actionId);
    if (!a) return "this request no longer exists";
    if (a.status !== "pending") return "this request has already been decided";
    if (a.level !== card.level) return "this card is from an earlier escalation level";
    if (!a.eligible?.includes(userId)) return "you are not an approver at this level";
    if (a.votes.some((v) => v.user === userId)) return "you have already voted";
    return null;
  }

  app.action<BlockAction<ButtonAction>>(ACTION_IDS.approve, async ({ ack, body, action }) => {
    await ack();
    const card = await clickedCard(body, action);
    if (!card) return refuseClick(body, "this button does not belong to a current approval card");
    await voteFrom(body.user.id, body.user.team_id, card, "approve");
  });

  for (const [actionId, render] of [
    [ACTION_IDS.deny, renderDenyModal],
    [ACTION_IDS.approveWithComment, renderApproveCommentModal],
  ] as const) {
    app.action<BlockAction<ButtonAction>>(actionId, async ({ ack, body, action }) => {
      await ack();
      const card = await clickedCard(body, action);
      if (!card) return refuseClick(body, "this button does not belong to a current approval card");
      const why = await mayVote(card, body.user.id);
      if (why) {
        // Cast it anyway so the refusal is judged and recorded by the one rule set.
        return void (await voteFrom(
          body.user.id,
          body.user.team_id,
          card,
          actionId === ACTION_IDS.deny ? "deny" : "approve",
        ));
      }
      const a = await store.getAction(card.actionId);
      await client.views.open({
        trigger_id: body.trigger_id,
        view: render({
          actionId: card.actionId,
          level: card.level,
          cardChannel: card.channel,
          cardTs: card.ts,
          summary: a?.request.action.summary ?? "",
        }) as never,
      });
    });
  }

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
    await ack();
    const card = await clickedCard(body, action);
    if (!card) return refuseClick(body, "this button does not belong to a current approval card");
    const view = await fullRequestView(card.actionId, 1);
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

  app.event("app_home_opened", async ({ event }) => {
    if (event.tab !== "home") return;
    const user = event.user;
    const ownedAgents = Object.values(approvals.policy.agents)
      .filter((ag) => Object.values(ag.owners).some((ids) => ids.includes(user)))
      .map((ag) => ag.id);
    const [waiting, decided, owned] = await Promise.all([
      store.pendingForApprover(user, 30),
      store.recentlyVotedBy(user, 25),
      store.recentForAgents(ownedAgents, 30),
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
      }) as never,
    });
  });

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
    app.view<ViewSubmitAction>(callbackId, async ({ ack, body, view }) => {
      const text = (view.state.values[field]?.[field]?.value ?? "").trim();
      if (!text) {
        await ack({
          response_action: "errors",
          errors: { [field]: vote === "deny" ? "Say why you deny it." : "Add a comment." },
        });
        return;
      }
      await ack();
      let meta: { actionId?: string; level?: number; channel?: string; ts?: string };
      try {
        meta = JSON.parse(view.private_metadata);
      } catch {
        return;
      }
      if (!meta.actionId || meta.level === undefined || !meta.channel || !meta.ts) return;
      // The modal carries the card it came from; check it again, it passed through the client.
      const card = await store.findCardByMessage(meta.channel, meta.ts);
      if (!card || card.actionId !== meta.actionId || card.level !== meta.level) return;
      await voteFrom(body.user.id, body.user.team_id ?? undefined, { ...card }, vote, text.slice(0, 1000));
    });
  }

  if (grants) registerRevoke(grants);

  /**
   * Revoke, on a decided approval's card: the last level's eligible approvers and the
   * agent's owners get a modal asking for a reason. Its submission is acknowledged only
   * once the revocation, or its refusal, is committed; a refusal's note follows the ack.
   */
  function registerRevoke(g: Grants) {
    async function refuseRevoke(actionId: string, userId: string, reason: string) {
      await store.appendEvents(
        actionId,
        null,
        [{ type: GRANT_EVENTS.revokeRefused, actor: `slack:${userId}`, data: { code: "forbidden", reason } }],
        Date.now(),
      );
    }
    const notAllowed = "only the last level's approvers and the agent's owners may revoke this approval";

    app.action<BlockAction<ButtonAction>>(ACTION_IDS.revoke, async ({ ack, body, action }) => {
      await ack();
      const card = await clickedCard(body, action);
      if (!card) return refuseClick(body, "this button does not belong to a current approval card");
      const a = await store.getAction(card.actionId);
      if (!a || !mayRevoke(approvals.policy, a, body.user.id)) {
        await refuseRevoke(card.actionId, body.user.id, notAllowed);
        return note(card.channel, body.user.id, renderNotApproverNote(notAllowed));
      }
      await client.views.open({
        trigger_id: body.trigger_id,
        view: renderRevokeModal({
          actionId: card.actionId,
          level: card.level,
          cardChannel: card.channel,
          cardTs: card.ts,
          summary: a.request.action.summary,
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
      let meta: { actionId?: string; level?: number; channel?: string; ts?: string };
      try {
        meta = JSON.parse(view.private_metadata);
      } catch {
        meta = {};
      }
      // The modal carries the card it came from; check it again, it passed through the client.
      const card = meta.channel && meta.ts ? await store.findCardByMessage(meta.channel, meta.ts) : null;
      if (!card || card.actionId !== meta.actionId || card.level !== meta.level) {
        await ack();
        return;
      }
      const userId = body.user.id;
      const a = await store.getAction(card.actionId);
      if (!a || !mayRevoke(approvals.policy, a, userId)) {
        await refuseRevoke(card.actionId, userId, notAllowed);
        await ack();
        return note(card.channel, userId, renderNotApproverNote(notAllowed));
      }
      const u = await directory.user(userId);
      let refused: string | null = null;
      try {
        await g.revoke(
          card.actionId,
          { user: userId, team: body.user.team_id ?? u?.team ?? "" },
          text.slice(0, 1000),
        );
      } catch (e) {
        // Anything but a refusal (the database away) is not acknowledged: the person sees an error.
        if (!(e instanceof GrantRefusal)) throw e;
        refused = e.message;
      }
      await ack();
      if (refused) await note(card.channel, userId, `Not revoked: ${refused}`);
    });
  }

  app.error(async (err) => {
    log.error({ err }, "slack: handler failed");
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
