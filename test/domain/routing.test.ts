import { describe, expect, it } from "vitest";
import { parsePolicyText as parsePolicy } from "../../src/adapters/policy/load.js";
import { type RouteQuery, selectRoute } from "../../src/domain/routing.js";
import type { Policy } from "../../src/domain/types.js";

const HEAD = `issuer: https://cs.example.com
slack: { team_id: T0TEAM }
risk_classes: [low, medium, high, critical]
regions:
  eu: { tz: Europe/Berlin }
  us: { tz: America/New_York }
agents:
  billing:
    owners: { risk: U0RISK }
    auth: { hmac_secret_env: BILLING_SECRET }
    allowed_actions: ["payments.*", "crm.read"]
  vendorbot:
    auth: { hmac_secret_env: VENDOR_SECRET }
    allowed_actions: ["*"]
    vendor_managed: true
`;

function policyWith(routes: string): Policy {
  return parsePolicy(`${HEAD}routes:\n${routes}`, "/etc/countersign/policy.yml");
}

function query(policy: Policy, q: Partial<Omit<RouteQuery, "agent">> & { agent?: string } = {}): RouteQuery {
  return {
    agent: policy.agents[q.agent ?? "billing"]!,
    action_type: q.action_type ?? "payments.refund",
    risk_class: q.risk_class ?? "high",
    region: q.region ?? "eu",
    details: q.details,
  };
}

const people = `    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
`;

describe("selectRoute", () => {
  const policy = policyWith(`  - name: vendor-anything
    when: { vendor_managed: true }
${people}  - name: eu-high-payments
    when: { risk_class: [high, critical], region: [eu], action: ["payments.*"] }
${people}  - name: billing-only
    when: { agent: [billing], region: [us] }
${people}  - name: low-auto
    when: { risk_class: [low], action: ["crm.read"] }
    auto: approve
`);

  it("takes the first route whose conditions all hold and explains each route it passed", () => {
    const d = selectRoute(policy, query(policy));
    expect(d.route?.name).toBe("eu-high-payments");
    expect(d.explanation).toEqual([
      {
        route: "vendor-anything",
        matched: false,
        because: "agent billing has vendor_managed false, route wants true",
      },
      {
        route: "eu-high-payments",
        matched: true,
        because:
          "risk_class high in [high, critical]; region eu in [eu]; action payments.refund matches payments.*",
      },
    ]);
  });

  it("stops at the first match even when a later route would match too", () => {
    const twice = policyWith(`  - name: first
    when: { region: [eu] }
${people}  - name: second
    when: { region: [eu] }
${people}`);
    const d = selectRoute(twice, query(twice));
    expect(d.route?.name).toBe("first");
    expect(d.explanation.map((e) => e.route)).toEqual(["first"]);
  });

  it("matches a vendor-managed agent on vendor_managed: true, before any other route", () => {
    const d = selectRoute(policy, query(policy, { agent: "vendorbot" }));
    expect(d.route?.name).toBe("vendor-anything");
    expect(d.explanation).toEqual([
      { route: "vendor-anything", matched: true, because: "agent vendorbot has vendor_managed true" },
    ]);
  });

  it("matches on the agent only for the agents listed", () => {
    const billing = selectRoute(policy, query(policy, { region: "us" }));
    expect(billing.route?.name).toBe("billing-only");

    const onlyVendor = policyWith(`  - name: vendorbot-only
    when: { agent: [vendorbot] }
${people}`);
    const d = selectRoute(onlyVendor, query(onlyVendor));
    expect(d.route).toBeNull();
    expect(d.explanation[0]!.because).toBe("agent billing not in [vendorbot]");
  });

  it("lists every condition that failed, so --explain shows all the reasons at once", () => {
    const d = selectRoute(
      policy,
      query(policy, { risk_class: "medium", region: "us", action_type: "crm.write" }),
    );
    expect(d.explanation.find((e) => e.route === "eu-high-payments")).toEqual({
      route: "eu-high-payments",
      matched: false,
      because:
        "risk_class medium not in [high, critical]; region us not in [eu]; action crm.write matches none of [payments.*]",
    });
  });

  it("returns no route, with an explanation for each route, when nothing matches", () => {
    const d = selectRoute(policy, query(policy, { risk_class: "low", action_type: "payments.charge" }));
    expect(d.route).toBeNull();
    expect(d.explanation.map((e) => [e.route, e.matched])).toEqual([
      ["vendor-anything", false],
      ["eu-high-payments", false],
      ["billing-only", false],
      ["low-auto", false],
    ]);
    // A condition that holds is not mentioned among the reasons a route failed.
    expect(d.explanation[3]!.because).toBe("action payments.charge matches none of [crm.read]");
  });

  it("returns an auto route like any other, levels empty", () => {
    const d = selectRoute(policy, query(policy, { risk_class: "low", action_type: "crm.read" }));
    expect(d.route).toMatchObject({ name: "low-auto", auto: "approve", levels: [] });
  });

  it("matches every request with when: {}", () => {
    const catchAll = policyWith(`  - name: everything
    when: {}
${people}`);
    for (const q of [
      query(catchAll),
      query(catchAll, { agent: "vendorbot", risk_class: "low", region: "us", action_type: "x" }),
    ]) {
      const d = selectRoute(catchAll, q);
      expect(d.route?.name).toBe("everything");
      expect(d.explanation).toEqual([
        { route: "everything", matched: true, because: "when is empty: matches every request" },
      ]);
    }
  });

  it("judges the risk class it is given, which the caller has already raised", () => {
    const floor = policyWith(`  - name: high-only
    when: { risk_class: [high] }
${people}`);
    expect(selectRoute(floor, query(floor, { risk_class: "low" })).route).toBeNull();
    expect(selectRoute(floor, query(floor, { risk_class: "high" })).route?.name).toBe("high-only");
  });
});
