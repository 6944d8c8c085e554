/**
 * Who people are, from Slack: users.info and usergroups.users.list, cached briefly so a
 * burst of requests for the same approvers costs one call each, and a removed member
 * loses their vote within a minute.
 */
import type { WebClient } from "@slack/web-api";
import type { Directory, DirectoryUser } from "../../app/ports.js";

interface Entry<T> {
  value: Promise<T>;
  until: number;
}

export class SlackDirectory implements Directory {
  private users = new Map<string, Entry<DirectoryUser | null>>();
  private groups = new Map<string, Entry<readonly string[]>>();

  constructor(
    private readonly client: WebClient,
    private readonly ttlMs = 60_000,
  ) {}

  user(id: string): Promise<DirectoryUser | null> {
    return this.cached(this.users, id, async () => {
      try {
        const r = await this.client.users.info({ user: id });
        const u = r.user;
        if (!u?.id) return null;
        return {
          id: u.id,
          team: u.team_id ?? "",
          isGuest: Boolean(u.is_restricted || u.is_ultra_restricted),
          isBot: Boolean(u.is_bot),
          deleted: Boolean(u.deleted),
          ...(u.profile?.email ? { email: u.profile.email } : {}),
          ...(u.real_name || u.profile?.real_name ? { realName: u.real_name ?? u.profile?.real_name } : {}),
        };
      } catch (e) {
        if ((e as { data?: { error?: string } }).data?.error === "user_not_found") return null;
        throw e;
      }
    });
  }

  groupMembers(groupId: string): Promise<readonly string[]> {
    return this.cached(this.groups, groupId, async () => {
      const r = await this.client.usergroups.users.list({ usergroup: groupId });
      return r.users ?? [];
    });
  }

  private cached<T>(map: Map<string, Entry<T>>, key: string, load: () => Promise<T>): Promise<T> {
    const now = Date.now();
    const hit = map.get(key);
    if (hit && hit.until > now) return hit.value;
    const value = load();
    map.set(key, { value, until: now + this.ttlMs });
    // A failed look-up is not cached: the next caller asks Slack again.
    value.catch(() => map.delete(key));
    return value;
  }
}
