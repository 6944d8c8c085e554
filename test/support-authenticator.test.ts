/**
 * The software authenticator (test/support/authenticator.ts) makes what a real one makes:
 * the WebAuthn library the server uses for its ceremonies registers it and accepts its
 * assertions, for each key type, and the same assertion passes `audit verify`'s offline
 * check. So the offline checker and the online ceremony agree on the bytes, and other
 * tests may rely on the authenticator without a browser.
 */
import { verifyAuthenticationResponse, verifyRegistrationResponse } from "@simplewebauthn/server";
import { describe, expect, it } from "vitest";
import { checkStepUp } from "../src/audit/step-up.js";
import { stepUpChallenge } from "../src/domain/step-up.js";
import { FLAG_UP, SoftwareAuthenticator } from "./support/authenticator.js";

const ORIGIN = "http://localhost:3000";
const RP_ID = "localhost";

describe("the software authenticator, against @simplewebauthn/server", () => {
  it.each(["p256", "ed25519", "rsa"] as const)(
    "%s: registers, then signs a step-up assertion both checkers accept",
    async (type) => {
      const auth = SoftwareAuthenticator.create(type);
      const regChallenge = Buffer.from("registration challenge").toString("base64url");
      const reg = await verifyRegistrationResponse({
        response: auth.registrationResponse({ challenge: regChallenge, origin: ORIGIN }),
        expectedChallenge: regChallenge,
        expectedOrigin: ORIGIN,
        expectedRPID: RP_ID,
        requireUserVerification: true,
      });
      expect(reg.verified).toBe(true);
      const credential = reg.registrationInfo!.credential;
      expect(credential.id).toBe(auth.credentialId);

      const input = { action_id: "act_1", action_sha256: "digest", level: 0, user: "U0ALICE", nonce: "n1" };
      const challenge = stepUpChallenge(input);
      const response = auth.authenticationResponse({ challenge, origin: ORIGIN });
      const assertion = await verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: ORIGIN,
        expectedRPID: RP_ID,
        credential: { id: credential.id, publicKey: credential.publicKey, counter: credential.counter },
        requireUserVerification: true,
      });
      expect(assertion.verified).toBe(true);

      // The same bytes, as a record's step_up, pass the offline check.
      const proof = {
        method: "webauthn",
        credential_id: auth.credentialId,
        public_key: auth.publicJwk,
        authenticator_data: response.response.authenticatorData,
        client_data_json: response.response.clientDataJSON,
        signature: response.response.signature,
        nonce: input.nonce,
      };
      const passkeys = new Map([
        [auth.credentialId, { user: "U0ALICE", team: "T0", publicKey: auth.publicJwk, seq: 1 }],
      ]);
      const subject = { action_id: "act_1", action_sha256: "digest", escalation_level: 0 };
      expect(checkStepUp({ user: "U0ALICE", team: "T0", step_up: proof }, subject, passkeys, ORIGIN)).toEqual(
        {
          ok: true,
          origin: ORIGIN,
          level: 0,
        },
      );
    },
  );

  it("an assertion without user verification is refused by both", async () => {
    const auth = SoftwareAuthenticator.create("p256");
    const reg = await verifyRegistrationResponse({
      response: auth.registrationResponse({ challenge: "cmVn", origin: ORIGIN }),
      expectedChallenge: "cmVn",
      expectedOrigin: ORIGIN,
      expectedRPID: RP_ID,
    });
    const credential = reg.registrationInfo!.credential;
    const challenge = stepUpChallenge({
      action_id: "a",
      action_sha256: "d",
      level: 0,
      user: "U0A",
      nonce: "n",
    });
    const response = auth.authenticationResponse({ challenge, origin: ORIGIN, flags: FLAG_UP });
    await expect(
      verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: ORIGIN,
        expectedRPID: RP_ID,
        credential,
        requireUserVerification: true,
      }),
    ).rejects.toThrow(/verif/i);
    const passkeys = new Map([
      [auth.credentialId, { user: "U0A", team: "T0", publicKey: auth.publicJwk, seq: 1 }],
    ]);
    const proof = {
      method: "webauthn",
      credential_id: auth.credentialId,
      public_key: auth.publicJwk,
      authenticator_data: response.response.authenticatorData,
      client_data_json: response.response.clientDataJSON,
      signature: response.response.signature,
      nonce: "n",
    };
    expect(
      checkStepUp(
        { user: "U0A", team: "T0", step_up: proof },
        { action_id: "a", action_sha256: "d", escalation_level: 0 },
        passkeys,
        ORIGIN,
      ),
    ).toMatchObject({ ok: false, check: "flags" });
  });
});
