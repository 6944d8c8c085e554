/**
 * docs/agents.md shows its examples as files under docs/examples/ (run by
 * test/sdk/package.test.ts with plain node, from the packed SDK): each block marked
 * `<!-- example: PATH -->` must be that file, byte for byte, so the page cannot drift
 * from what was run. The mcpServers blocks must name real commands.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const read = (p: string) => fs.readFileSync(path.join(ROOT, p), "utf8");
const page = read("docs/agents.md");

function includedBlocks(): { file: string; body: string }[] {
  const out: { file: string; body: string }[] = [];
  const re = /<!-- example: (\S+) -->\n```[a-z]*\n([\s\S]*?)\n```/g;
  for (let m = re.exec(page); m !== null; m = re.exec(page)) out.push({ file: m[1]!, body: m[2]! });
  return out;
}

describe("docs/agents.md examples", () => {
  it("shows each example file exactly as it is run", () => {
    const blocks = includedBlocks();
    expect(blocks.map((b) => b.file).sort()).toEqual([
      "docs/examples/http-agent.mjs",
      "docs/examples/mcp-gateway.json",
      "docs/examples/mcp-servers.json",
      "docs/examples/queue-agent.mjs",
      "docs/examples/with-approval.mjs",
    ]);
    for (const b of blocks) expect(b.body, b.file).toBe(read(b.file).replace(/\n$/, ""));
  });

  it("imports the installable package, never the private repository", () => {
    for (const f of [
      "docs/agents.md",
      "docs/mcp.md",
      ...fs.readdirSync(path.join(ROOT, "docs/examples")).map((f) => `docs/examples/${f}`),
    ]) {
      expect(read(f), f).not.toMatch(/from "countersign"/);
    }
  });

  it("gives each example its own request_id", () => {
    const ids = ["http-agent.mjs", "queue-agent.mjs"].map(
      (f) => /request_id: `([^`$]+)/.exec(read(`docs/examples/${f}`))?.[1],
    );
    expect(ids.every(Boolean)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("the mcpServers blocks start real commands with an agent", () => {
    const mcp = JSON.parse(read("docs/examples/mcp-servers.json")).mcpServers.countersign;
    expect(mcp.args.slice(0, 4)).toEqual(["countersign", "mcp", "--agent", "billing-agent"]);
    const gw = JSON.parse(read("docs/examples/mcp-gateway.json")).mcpServers.payments;
    expect(gw.args.slice(0, 4)).toEqual(["countersign", "mcp-gateway", "--agent", "billing-agent"]);
    expect(gw.args.indexOf("--")).toBeGreaterThan(0);
    expect(gw.args.slice(gw.args.indexOf("--") + 1).length).toBeGreaterThan(0);
    const cli = read("src/cli/main.ts");
    expect(cli).toContain('.command("mcp")');
    expect(cli).toContain('.command("mcp-gateway")');
  });
});
