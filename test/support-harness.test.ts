/** The integration harness cleans up after itself, even when start-up fails. */
import fs from "node:fs";
import os from "node:os";
import { describe, expect, it } from "vitest";
import { startHarness } from "./support/harness.js";

const tempFolders = () =>
  new Set(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith("countersign-test-")));

describe("startHarness", () => {
  it("removes its temp folder when Countersign fails to start", async () => {
    const before = tempFolders();
    const err = await startHarness({ policy: "issuer: [not a policy" }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    // Other test files may be creating their own folders meanwhile: look for new ones that stay.
    const left = [...tempFolders()].filter((n) => !before.has(n));
    const stale = left.filter((n) => {
      try {
        return (
          fs.existsSync(`${os.tmpdir()}/${n}/policy.yml`) &&
          fs.readFileSync(`${os.tmpdir()}/${n}/policy.yml`, "utf8") === "issuer: [not a policy"
        );
      } catch {
        return false;
      }
    });
    expect(stale).toEqual([]);
  });
});
