/**
 * The signing key on disk: one PKCS8 PEM, readable only by its owner. Generating a key
 * over an existing one keeps the old file beside it (`<file>.<kid>.retired`): its public
 * half stays in the database's key list, so old records keep verifying.
 */
import fs from "node:fs";
import path from "node:path";
import { generateSigningKeyPem, loadSigningKey, type SigningKey } from "../../records/signing.js";

export class KeyFileError extends Error {
  override readonly name = "KeyFileError" as const;
}

export function readSigningKey(file: string): SigningKey {
  let pem: string;
  try {
    pem = fs.readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      throw new KeyFileError(`no signing key at ${file}: run \`countersign keys generate\` first`);
    }
    throw new KeyFileError(`cannot read the signing key at ${file}: ${(e as Error).message}`);
  }
  return loadSigningKey(pem, file);
}

/** Write a fresh key; an existing one is moved aside, never overwritten. Returns the new key. */
export function generateKeyFile(file: string): { key: SigningKey; retired: string | null } {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // Written whole beside the target, then renamed into place: a running service that
  // watches the file never reads half a key.
  const pem = generateSigningKeyPem();
  const key = loadSigningKey(pem, file);
  const tmp = `${file}.${key.kid}.new`;
  fs.writeFileSync(tmp, pem, { mode: 0o600, flag: "wx" });
  let retired: string | null = null;
  if (fs.existsSync(file)) {
    const old = readSigningKey(file);
    retired = `${file}.${old.kid}.retired`;
    fs.renameSync(file, retired);
  }
  fs.renameSync(tmp, file);
  return { key, retired };
}

export function ensureKeyFile(file: string): SigningKey {
  return fs.existsSync(file) ? readSigningKey(file) : generateKeyFile(file).key;
}
