export declare const SERVE_NODE_FLAGS: readonly string[];
export declare function missingNodeFlags(
  args: readonly string[],
  execArgv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): string[];
export declare function relaunch(flags: readonly string[], script: string, args: readonly string[]): void;
