/**
 * The demo as the tests start it: its own data folder and queue prefix on the shared Redis,
 * fast timers, a demo agent on it; `stop` removes all of it, the queue keys included.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { pino } from "pino";
import { type Demo, startDemo } from "../../src/simulator/demo.js";
import { DemoAgent } from "../../src/simulator/demo-agent.js";
import { deleteKeys, REDIS_URL } from "./harness.js";

export interface TestDemo {
  readonly demo: Demo;
  readonly agent: DemoAgent;
  stop(): Promise<void>;
}

export async function startTestDemo(o: {
  readonly name: string;
  readonly socketMode?: boolean;
  /** The demo agent hands its approvals to the demo executor. */
  readonly withExecutor?: boolean;
  readonly print?: (line: string) => void;
}): Promise<TestDemo> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `countersign-${o.name}-`));
  let demo: Demo | undefined;
  let agent: DemoAgent | undefined;
  const stop = async () => {
    await agent?.stop();
    await demo?.stop();
    // The demo's queues leave their keys (meta, events, ids) behind: the shared Redis keeps none.
    const redis = new Redis(REDIS_URL);
    if (demo) await deleteKeys(redis, `${demo.queuePrefix}:*`);
    redis.disconnect();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    demo = await startDemo({
      dataDir: dir,
      pagePort: 0,
      redisUrl: REDIS_URL,
      queuePrefix: `test-${randomUUID()}`,
      log: pino({ level: "silent" }),
      pollMs: 50,
      sweepMs: 100,
      ...(o.socketMode ? { socketMode: true } : {}),
    });
    agent = await DemoAgent.start({
      redisUrl: REDIS_URL,
      prefix: demo.queuePrefix,
      issuer: demo.issuer,
      secrets: demo.agentSecrets,
      appUrl: demo.appUrl,
      print: o.print ?? (() => {}),
      ...(o.withExecutor && demo.executor ? { executor: demo.executor } : {}),
    });
  } catch (e) {
    await stop();
    throw e;
  }
  return { demo, agent, stop };
}
