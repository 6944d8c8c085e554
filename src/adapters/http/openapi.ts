/**
 * `GET /openapi.json`: the HTTP API described as OpenAPI 3.1, generated at start from the
 * zod schemas that validate the requests (src/domain/request.ts), so the description cannot
 * drift from what the server accepts. OpenAPI 3.1 takes JSON Schema 2020-12 as it is, which
 * is what z.toJSONSchema writes. The answers' shapes are declared here once, in zod, next
 * to the paths that give them; test/adapters/openapi.test.ts checks real answers against them.
 */
import { z } from "zod";
import { ActionRequestSchema } from "../../domain/request.js";

const ISO = z.string().describe("ISO 8601 time");
const VERDICT = z.enum(["approved", "denied", "expired", "cancelled"]);

const ActionAnswer = z.object({
  action_id: z.string(),
  request_id: z.string(),
  status: z.enum(["pending", "approved", "denied", "expired", "cancelled"]),
  verdict: VERDICT.optional(),
  record: z.string().describe("the signed decision record (compact JWS, typ decision+jwt)").optional(),
  request: z
    .record(z.string(), z.unknown())
    .describe(
      "the request as decided, once decided: the agent's own, or the revision approvers changed it to (the agent's request with the record's `edits` applied; its digest is the record's action_sha256). Execute this one",
    )
    .optional(),
  route: z.string().nullable().describe("the route's name"),
  deadline: ISO.nullable(),
  created_at: ISO.optional(),
  decided_at: ISO.optional(),
  revoked_at: ISO.optional(),
  redeemed_at: ISO.optional(),
});

const Problem = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  code: z.string().describe("a stable code, e.g. invalid_request, bad_proof, request_id_conflict"),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
});

const Jwks = z.object({
  keys: z.array(
    z.object({
      kty: z.literal("OKP"),
      crv: z.literal("Ed25519"),
      x: z.string(),
      kid: z.string(),
      alg: z.literal("EdDSA"),
      use: z.literal("sig"),
    }),
  ),
});

const CancelBody = z.strictObject({ note: z.string().max(1000).optional() });
const RedeemBody = z.strictObject({
  record: z.string(),
  request: z
    .record(z.string(), z.unknown())
    .describe(
      "the request about to be carried out: the decided revision (the `request` the job, GET or webhook answered), whose RFC 8785 digest is the record's action_sha256; when approvers changed it, the agent's original is refused",
    ),
});
const OutcomeBody = z.strictObject({
  status: z.enum(["succeeded", "failed"]),
  detail: z.string().max(1000).optional(),
});
const Receipt = z
  .object({ receipt: z.string().describe("a signed receipt (compact JWS, typ receipt+jwt)") })
  .catchall(z.unknown());

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: string) => ({ "application/json": { schema: ref(name) } });
const problems = (...statuses: number[]) =>
  Object.fromEntries(
    statuses.map((s) => [
      String(s),
      { description: "refused", content: { "application/problem+json": { schema: ref("Problem") } } },
    ]),
  );
const bearer = [{ bearer: [] }];

/** Builds the document; called once at start. */
export function openApiDocument(version: string): Record<string, unknown> {
  const schemas: Record<string, unknown> = {};
  const add = (name: string, schema: z.ZodType, io: "input" | "output") => {
    const s = z.toJSONSchema(schema, { target: "draft-2020-12", io, unrepresentable: "any" }) as Record<
      string,
      unknown
    >;
    delete s["$schema"];
    delete s["id"];
    schemas[name] = s;
  };
  // What the server accepts: the validating schema itself, as its input.
  add("ActionRequest", ActionRequestSchema, "input");
  add("CancelBody", CancelBody, "input");
  add("RedeemBody", RedeemBody, "input");
  add("OutcomeBody", OutcomeBody, "input");
  add("ActionAnswer", ActionAnswer, "output");
  add("Problem", Problem, "output");
  add("JWKS", Jwks, "output");
  add("Receipt", Receipt, "output");

  return {
    openapi: "3.1.0",
    info: {
      title: "Countersign",
      version,
      description:
        "A human approval gate for AI agents. Agents authenticate with `Authorization: Bearer <JWT>` signed with their own key, bound to the call's body (docs/agents.md).",
    },
    jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
    components: {
      schemas,
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description: "a proof JWT: iss the agent (or executor), aud the issuer, req the body's digest",
        },
      },
    },
    paths: {
      "/v1/actions": {
        post: {
          operationId: "submitAction",
          summary: "Ask for an approval",
          security: bearer,
          requestBody: { required: true, content: json("ActionRequest") },
          responses: {
            "201": { description: "accepted", content: json("ActionAnswer") },
            "200": {
              description: "a repeat of the same request_id and content",
              content: json("ActionAnswer"),
            },
            ...problems(400, 401, 403, 409, 413, 415, 429, 503),
          },
        },
      },
      "/v1/actions/{id}": {
        get: {
          operationId: "getAction",
          summary: "An action's status, held up to `wait` seconds while pending",
          security: bearer,
          parameters: [
            { name: "id", in: "path", required: true, schema: { type: "string" } },
            {
              name: "wait",
              in: "query",
              required: false,
              schema: { type: "integer", minimum: 1, maximum: 60 },
            },
          ],
          responses: {
            "200": { description: "the action", content: json("ActionAnswer") },
            ...problems(400, 401, 404, 503),
          },
        },
      },
      "/v1/actions/{id}/cancel": {
        post: {
          operationId: "cancelAction",
          summary: "Withdraw a pending request: verdict cancelled, a signed record",
          security: bearer,
          parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
          requestBody: { required: true, content: json("CancelBody") },
          responses: {
            "200": { description: "cancelled", content: json("ActionAnswer") },
            ...problems(400, 401, 404, 409, 503),
          },
        },
      },
      "/v1/grants/redeem": {
        post: {
          operationId: "redeemGrant",
          summary: "An executor redeems an approval, once",
          security: bearer,
          requestBody: { required: true, content: json("RedeemBody") },
          responses: {
            "200": { description: "redeemed", content: json("Receipt") },
            ...problems(400, 401, 403, 409, 410, 503),
          },
        },
      },
      "/v1/actions/{id}/outcome": {
        post: {
          operationId: "reportOutcome",
          summary: "How the execution went, once",
          security: bearer,
          parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
          requestBody: { required: true, content: json("OutcomeBody") },
          responses: {
            "201": { description: "recorded", content: json("Receipt") },
            ...problems(400, 401, 403, 404, 409, 503),
          },
        },
      },
      "/.well-known/jwks.json": {
        get: {
          operationId: "jwks",
          summary: "The keys that sign records and receipts, retired ones included",
          responses: { "200": { description: "the key set", content: json("JWKS") } },
        },
      },
      "/openapi.json": {
        get: {
          operationId: "openapi",
          summary: "This document",
          responses: { "200": { description: "OpenAPI 3.1", content: { "application/json": {} } } },
        },
      },
    },
  };
}
