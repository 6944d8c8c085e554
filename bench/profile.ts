/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`, or BENCH_CPU_PROF_DIR for the
 * benchmark's server process) as text: where the samples were taken, by function (self
 * time), by function including what it called (total time), and by file or package.
 *
 *   node --import tsx bench/profile.ts FILE.cpuprofile [--top=25] [--match=src/] [--last=SECONDS] [--under=NAME]
 *
 * `--match` keeps only frames whose URL contains the text in the total-time list, to see
 * which of our own functions the time is spent under. `--last` keeps only the samples of
 * the profile's last seconds (the end of a measure, such as a burst of expiries);
 * `--under` only the samples taken inside a function of that name (`exportToFileOrStdout`).
 */
import fs from "node:fs";

interface Frame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: Frame;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

export interface ProfileSummary {
  readonly totalMs: number;
  readonly idleMs: number;
  readonly self: readonly { readonly name: string; readonly ms: number }[];
  readonly total: readonly { readonly name: string; readonly ms: number }[];
  readonly byFile: readonly { readonly name: string; readonly ms: number }[];
}

function label(f: Frame): string {
  const url = f.url.replace(/^file:\/\//, "").replace(/^.*\/node_modules\//, "~/");
  const short = url.replace(/^.*\/(src|bench|test)\//, "$1/");
  return `${f.functionName || "(anonymous)"} ${short ? `${short}:${f.lineNumber + 1}` : ""}`.trim();
}

function fileOf(f: Frame): string {
  if (!f.url) return f.functionName.startsWith("(") ? f.functionName : "(native)";
  const url = f.url.replace(/^file:\/\//, "");
  const pkg = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return `package ${pkg[1]}`;
  if (url.startsWith("node:")) return url;
  return url.replace(/^.*\/(src|bench|test)\//, "$1/");
}

export interface SummaryOptions {
  /** Rows per list. */
  readonly top?: number;
  /** Total-time list: only frames whose URL contains this. */
  readonly match?: string;
  /** Only the samples of the profile's last seconds. */
  readonly lastS?: number;
  /** Only samples with a frame of this function name on their stack. */
  readonly under?: string;
}

export function summarise(profile: CpuProfile, o: SummaryOptions = {}): ProfileSummary {
  const { top = 25, match, lastS, under } = o;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  const from = lastS === undefined ? Number.NEGATIVE_INFINITY : profile.endTime - lastS * 1e6;
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at >= from) selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const byFile = new Map<string, number>();
  let idle = 0;
  let all = 0;
  const stackHas = (id: number, name: string): boolean => {
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      if (byId.get(cur)!.callFrame.functionName === name) return true;
    }
    return false;
  };
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    if (under && !stackHas(id, under)) continue;
    all += us;
    if (node.callFrame.functionName === "(idle)") idle += us;
    const name = label(node.callFrame);
    self.set(name, (self.get(name) ?? 0) + us);
    const file = fileOf(node.callFrame);
    byFile.set(file, (byFile.get(file) ?? 0) + us);
    // Total time: count each distinct frame on the stack once, so recursion is not doubled.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      if (match && !f.url.includes(match)) continue;
      const l = label(f);
      if (seen.has(l)) continue;
      seen.add(l);
      total.set(l, (total.get(l) ?? 0) + us);
    }
  }
  const list = (m: Map<string, number>) =>
    [...m.entries()]
      .filter(([name]) => !name.startsWith("(idle)"))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: Math.round(us / 1000) }));
  return {
    totalMs: Math.round(all / 1000),
    idleMs: Math.round(idle / 1000),
    self: list(self),
    total: list(total),
    byFile: list(byFile),
  };
}

function print(s: ProfileSummary): string {
  const busy = s.totalMs - s.idleMs;
  const pct = (ms: number) => `${((100 * ms) / Math.max(1, busy)).toFixed(1)}%`.padStart(6);
  const section = (title: string, rows: ProfileSummary["self"]) =>
    [title, ...rows.map((r) => `${pct(r.ms)} ${String(r.ms).padStart(7)} ms  ${r.name}`)].join("\n");
  return [
    `${s.totalMs} ms sampled, ${s.idleMs} ms idle, ${busy} ms busy (percentages of busy time)`,
    "",
    section("self time by file or package:", s.byFile),
    "",
    section("self time by function:", s.self),
    "",
    section("total time by function (including callees):", s.total),
  ].join("\n");
}

function main(argv: readonly string[]): void {
  const file = argv.find((a) => !a.startsWith("--"));
  if (!file) {
    throw new Error(
      "usage: node --import tsx bench/profile.ts FILE.cpuprofile [--top=25] [--match=src/] [--last=SECONDS] [--under=NAME]",
    );
  }
  const opt = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const top = opt("top");
  const last = opt("last");
  const match = opt("match");
  const under = opt("under");
  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
  const summary = summarise(profile, {
    ...(top ? { top: Number(top) } : {}),
    ...(last ? { lastS: Number(last) } : {}),
    ...(match ? { match } : {}),
    ...(under ? { under } : {}),
  });
  process.stdout.write(`${print(summary)}\n`);
}

// Run as a script; importable for its summarise().
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop()!)) {
  main(process.argv.slice(2));
}
