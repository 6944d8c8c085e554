/**
 * What is wrong with a policy file, and where: every problem carries the line and column of
 * the node that causes it, so one run of `policy check` shows all of them.
 */

export interface PolicyProblem {
  /** 1-based; 0 when the file could not be read at all. */
  readonly line: number;
  /** 1-based; 0 when the file could not be read at all. */
  readonly column: number;
  /** Where in the policy, dotted (`routes.0.when.risk_class`); keys holding dots are quoted (`actions["payments.*"]`). */
  readonly path: string;
  readonly message: string;
}

/** A policy file that cannot be used. The message has one `file:line:column: path: message` line per problem. */
export class PolicyError extends Error {
  override readonly name = "PolicyError" as const;
  constructor(
    readonly file: string,
    readonly problems: readonly PolicyProblem[],
  ) {
    super(problems.map((p) => formatProblem(file, p)).join("\n"));
  }
}

function formatProblem(file: string, p: PolicyProblem): string {
  return p.path === ""
    ? `${file}:${p.line}:${p.column}: ${p.message}`
    : `${file}:${p.line}:${p.column}: ${p.path}: ${p.message}`;
}

export function sortProblems(problems: PolicyProblem[]): PolicyProblem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => a.p.line - b.p.line || a.p.column - b.p.column || a.i - b.i)
    .map(({ p }) => p);
}
