/** manifest.yml installs what the app uses: the command, the event, the endpoints, the scopes. */
import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const m = parse(fs.readFileSync(new URL("../manifest.yml", import.meta.url), "utf8"));

describe("manifest.yml", () => {
  it("declares /approvals, the Home tab and its event, all on /slack/events", () => {
    expect(m.features.slash_commands.map((c: { command: string }) => c.command)).toEqual(["/approvals"]);
    expect(m.features.app_home.home_tab_enabled).toBe(true);
    expect(m.settings.event_subscriptions.bot_events).toEqual(["app_home_opened"]);
    for (const url of [
      m.settings.interactivity.request_url,
      m.settings.event_subscriptions.request_url,
      m.features.slash_commands[0].url,
    ]) {
      expect(new URL(url).pathname).toBe("/slack/events");
    }
  });

  it("asks for exactly the bot scopes the app's Web API calls need", () => {
    expect([...m.oauth_config.scopes.bot].sort()).toEqual(
      [
        "channels:history", // conversations.history: find a card after a crash
        "chat:write", // chat.postMessage, chat.update, chat.postEphemeral
        "commands", // /approvals
        "groups:history", // conversations.history in private channels
        "im:write", // conversations.open for DMs
        "usergroups:read", // usergroups.users.list
        "users:read", // users.info: guest? which workspace?
        "users:read.email", // the voter's email in the record
      ].sort(),
    );
  });
});
