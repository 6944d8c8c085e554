/**
 * Loading the policy: the one place that reads the policy file, the agents' public key
 * files it names (relative to the policy's folder) and their secrets from the environment.
 * The domain (src/domain/policy.ts) is given text and values, so it can be tested and
 * reused without a file system. Reading happens once, at start-up or in a CLI command,
 * so it is synchronous, and a missing secret or unreadable key stops the process with the
 * agent's name rather than failing its first request.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { PolicyError, parsePolicy } from "../../domain/policy.js";
import type { Policy } from "../../domain/types.js";
import { type AgentKey, MIN_SECRET_BYTES } from "../../records/proof.js";

/** Reads a policy file and parses it. A file that cannot be read is a PolicyError at line 0. */
export function loadPolicyFile(path: string): Policy {
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "the policy file does not exist (set POLICY_FILE or pass the file's path)"
        : code === "EISDIR"
          ? "this is a folder, not a policy file"
          : code === "EACCES"
            ? "the policy file cannot be read: permission denied"
            : `the policy file cannot be read: ${code ?? String(err)}`;
    throw new PolicyError(file, [{ line: 0, column: 0, path: "", message: why }]);
  }
  return parsePolicyText(text, file);
}

/**
 * Parses a policy's text as if read from `file` (an absolute path): relative
 * `public_key_file` paths are resolved against its folder, without reading them.
 */
export function parsePolicyText(text: string, file: string): Policy {
  return parsePolicy(text, file, (written) => resolve(dirname(file), written));
}

/**
 * Loads every agent's verification key at start-up, so a missing secret or unreadable key
 * stops the process with the agent's name rather than failing its first request.
 */
export function loadAgentKeys(
  policy: Policy,
  env: Readonly<Record<string, string | undefined>>,
): Map<string, AgentKey> {
  const keys = new Map<string, AgentKey>();
  // Executors prove who they are the same way; ids never overlap (policy check refuses it).
  const signers = [
    ...Object.entries(policy.agents).map(([id, a]) => ({ id, auth: a.auth, role: "agent" })),
    ...Object.entries(policy.executors ?? {}).map(([id, x]) => ({ id, auth: x.auth, role: "executor" })),
  ];
  for (const { id, auth, role } of signers) {
    if (auth.kind === "hmac") {
      const value = env[auth.secret_env];
      if (value === undefined || value === "") {
        throw new Error(
          `${role} "${id}": environment variable ${auth.secret_env} (its HMAC secret) is not set`,
        );
      }
      const secret = new TextEncoder().encode(value);
      if (secret.length < MIN_SECRET_BYTES) {
        throw new Error(
          `${role} "${id}": the secret in ${auth.secret_env} is ${secret.length} bytes; HS256 needs at least ${MIN_SECRET_BYTES}`,
        );
      }
      keys.set(id, { kind: "hmac", secret });
    } else {
      // The loader resolves paths when it parses; resolving again is a no-op for absolute ones.
      const file = resolve(dirname(policy.file), auth.public_key_file);
      let pem: string;
      try {
        pem = readFileSync(file, "utf8");
      } catch (err) {
        throw new Error(`${role} "${id}": cannot read public_key_file ${file}: ${(err as Error).message}`);
      }
      let publicKey: KeyObject;
      try {
        publicKey = createPublicKey(pem);
      } catch {
        throw new Error(`${role} "${id}": public_key_file ${file} is not a readable PEM public key`);
      }
      if (publicKey.asymmetricKeyType !== "ed25519") {
        throw new Error(
          `${role} "${id}": public_key_file ${file} holds a key of type ${publicKey.asymmetricKeyType ?? "unknown"}; an Ed25519 key is required`,
        );
      }
      keys.set(id, { kind: "eddsa", publicKey });
    }
  }
  return keys;
}
