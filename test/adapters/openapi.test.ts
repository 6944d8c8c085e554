/**
 * GET /openapi.json against the running server: the document is OpenAPI 3.1, and real
 * requests and the server's real answers (accepted, decided, refused, repeated) validate
 * against it with a JSON Schema 2020-12 validator (ajv), while a request the server
 * refuses for its shape fails the document's schema too.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { type Harness, request, startHarness } from "../support/harness.js";

let h: Harness;
// biome-ignore lint/suspicious/noExplicitAny: the document is read field by field
let doc: any;
let ajv: InstanceType<typeof Ajv2020>;

beforeAll(async () => {
  h = await startHarness();
  const r = await fetch(`${h.app.url}/openapi.json`);
  expect(r.status).toBe(200);
  doc = await r.json();
  ajv = new Ajv2020({ strict: false, allErrors: true });
  // Each component under the $id its $refs use.
  ajv.addSchema({ $id: "doc", components: doc.components }, "doc");
}, 60_000);
afterAll(async () => {
  await h?.stop();
});

function check(schemaRef: string, value: unknown): string[] {
  const name = schemaRef.replace("#/components/schemas/", "");
  const validate = ajv.getSchema(`doc#/components/schemas/${name}`);
  if (!validate) throw new Error(`no schema ${name}`);
  return validate(value)
    ? []
    : (validate.errors ?? []).map(
        (e: { instancePath: string; message?: string }) => `${e.instancePath} ${e.message}`,
      );
}

/** The schema the document gives for an answer of `status` to `method path`. */
function responseSchema(path: string, method: string, status: number, type = "application/json"): string {
  const op = doc.paths[path][method];
  const ref = op.responses[String(status)]?.content?.[type]?.schema?.$ref;
  if (typeof ref !== "string") throw new Error(`${method} ${path} documents no ${status} ${type}`);
  return ref;
}

describe("GET /openapi.json", () => {
  it("is OpenAPI 3.1 and describes the agent API", () => {
    expect(doc.openapi).toMatch(/^3\.1\./);
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        "/v1/actions",
        "/v1/actions/{id}",
        "/v1/actions/{id}/cancel",
        "/.well-known/jwks.json",
      ]),
    );
    expect(doc.components.schemas.ActionRequest.required).toEqual(
      expect.arrayContaining(["request_id", "agent_id", "action", "risk_class", "region", "purpose"]),
    );
  });

  it("real requests and the server's real answers validate against it", async () => {
    const req = request();
    const reqRef = doc.paths["/v1/actions"].post.requestBody.content["application/json"].schema.$ref;
    expect(check(reqRef, req)).toEqual([]);

    const created = await h.api("POST", "/v1/actions", { body: req });
    expect(created.status).toBe(201);
    expect(check(responseSchema("/v1/actions", "post", 201), created.json)).toEqual([]);
    const repeat = await h.api("POST", "/v1/actions", { body: req });
    expect(repeat.status).toBe(200);
    expect(check(responseSchema("/v1/actions", "post", 200), repeat.json)).toEqual([]);

    const id = created.json.action_id;
    const pending = await h.api("GET", `/v1/actions/${id}`);
    expect(check(responseSchema("/v1/actions/{id}", "get", 200), pending.json)).toEqual([]);

    const card = await h.card(id);
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    await h.click("U0BOB", card, ACTION_IDS.approve);
    const decided = await h.api("GET", `/v1/actions/${id}?wait=10`);
    expect(decided.json.status).toBe("approved");
    expect(check(responseSchema("/v1/actions/{id}", "get", 200), decided.json)).toEqual([]);

    const other = await h.api("POST", "/v1/actions", { body: request() });
    const cancelled = await h.api("POST", `/v1/actions/${other.json.action_id}/cancel`, {
      body: { note: "no" },
    });
    expect(cancelled.status).toBe(200);
    expect(check(responseSchema("/v1/actions/{id}/cancel", "post", 200), cancelled.json)).toEqual([]);

    const jwks = await (await fetch(`${h.app.url}/.well-known/jwks.json`)).json();
    expect(check(responseSchema("/.well-known/jwks.json", "get", 200), jwks)).toEqual([]);
  }, 60_000);

  it("a request refused for its shape fails the schema too, and the refusal is a documented problem", async () => {
    const bad = { ...request(), colour: "red", action: { type: "Payments Refund", summary: "x" } };
    const reqRef = doc.paths["/v1/actions"].post.requestBody.content["application/json"].schema.$ref;
    expect(check(reqRef, bad)).not.toEqual([]);
    const r = await h.api("POST", "/v1/actions", { body: bad });
    expect(r.status).toBe(400);
    expect(check(responseSchema("/v1/actions", "post", 400, "application/problem+json"), r.json)).toEqual([]);
    const noToken = await h.api("GET", "/v1/actions/act_nope", { token: null });
    expect(noToken.status).toBe(401);
    expect(
      check(responseSchema("/v1/actions/{id}", "get", 401, "application/problem+json"), noToken.json),
    ).toEqual([]);
  });
});
