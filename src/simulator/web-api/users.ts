/**
 * The users.* and usergroups.* families: who a person is (for eligibility checks and
 * names on cards) and who is in a user group (for approver groups).
 */
import type { webApi } from "@slack/bolt";
import { type Obj, Refusal, type SimState, str, type WireArgs } from "./state.js";

export function usersInfo(state: SimState, args: WireArgs<webApi.UsersInfoArguments>): Obj {
  const user = state.users.get(str(args.user) ?? "");
  if (!user) throw new Refusal("user_not_found");
  const realName = user.real_name ?? user.name;
  return {
    ok: true,
    user: {
      id: user.id,
      team_id: user.team_id,
      name: user.name,
      deleted: false,
      real_name: realName,
      tz: user.tz ?? "Etc/UTC",
      is_admin: false,
      is_owner: false,
      is_restricted: user.is_restricted ?? false,
      is_ultra_restricted: user.is_ultra_restricted ?? false,
      is_bot: user.is_bot ?? false,
      is_app_user: false,
      profile: {
        real_name: realName,
        display_name: user.name,
        ...(user.email !== undefined ? { email: user.email } : {}),
      },
    },
  };
}

export function usergroupUsers(state: SimState, args: WireArgs<webApi.UsergroupsUsersListArguments>): Obj {
  const members = state.usergroups.get(str(args.usergroup) ?? "");
  if (!members) throw new Refusal("no_such_subteam");
  return { ok: true, users: [...members] };
}
