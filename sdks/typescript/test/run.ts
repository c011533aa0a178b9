// `npm test`: runs every test file against Apache Kafka at $RETRACE_TEST_KAFKA_BOOTSTRAP, or,
// when it is unset, against one node started here with tests/kafka/kafka-local and stopped
// at the end (the launcher stops when its stdin closes, also if this process dies).

import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

const repo = resolve(__dirname, "../../../..");

async function startKafka(): Promise<{ bootstrap: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "retrace-ts-kafka-"));
  const launcher = spawn(
    join(repo, "tests/kafka/kafka-local"),
    ["start", "--dir", dir, "--until-stdin-closes", "--clean"],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  const exited = new Promise<number | null>((done) => launcher.on("exit", done));
  const lines = createInterface({ input: launcher.stdout! });
  let bootstrap: string | undefined;
  for await (const line of lines) {
    if (line.startsWith("bootstrap=")) {
      bootstrap = line.slice("bootstrap=".length);
      break;
    }
  }
  if (bootstrap === undefined) {
    throw new Error(`tests/kafka/kafka-local exited (${await exited}) without a bootstrap line; its message is above`);
  }
  // Keep draining its stdout, so it never blocks writing.
  launcher.stdout!.resume();
  return {
    bootstrap,
    stop: async () => {
      launcher.stdin!.end();
      await exited;
    },
  };
}

async function main(): Promise<number> {
  let stop = async () => {};
  if (!process.env.RETRACE_TEST_KAFKA_BOOTSTRAP) {
    const kafka = await startKafka();
    process.env.RETRACE_TEST_KAFKA_BOOTSTRAP = kafka.bootstrap;
    stop = kafka.stop;
    console.log(`started Apache Kafka at ${kafka.bootstrap} for these tests`);
  }
  try {
    const files = readdirSync(__dirname)
      .filter((f) => f.endsWith(".test.js"))
      .map((f) => join(__dirname, f));
    const node = spawn(process.execPath, ["--test", "--test-timeout=120000", ...process.argv.slice(2), ...files], {
      stdio: "inherit",
      env: process.env,
    });
    return await new Promise<number>((done) => node.on("exit", (code) => done(code ?? 1)));
  } finally {
    await stop();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
