// Starts bench/dns-child.ts and talks to it.

import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Zone } from "../../test/support/dns-server.ts";

export interface BenchDns {
  /** The test server, for resolvers that take a port: 127.0.0.1:PORT. */
  readonly host: string;
  readonly port: number;
  /** <127.53.53.x> on port 53, for resolvers that only read /etc/resolv.conf; undefined if unavailable. */
  readonly relay: string | undefined;
  readonly relayError: string | undefined;
  /** Queries answered since the last reset, by "name TYPE". */
  counts(): Promise<Record<string, number>>;
  reset(): void;
  close(): Promise<void>;
}

const CHILD = fileURLToPath(new URL("../dns-child.ts", import.meta.url));

export async function startBenchDns(zone: Zone, opts: { relay: boolean }): Promise<BenchDns> {
  const child: ChildProcess = fork(CHILD, [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const ready = await new Promise<{ port: number; relay?: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the DNS child did not start in 10 s")), 10_000);
    child.once("exit", (code) => reject(new Error(`the DNS child exited with ${code}`)));
    child.on("message", function first(raw: unknown) {
      const m = raw as { ready?: boolean; port?: number; relay?: string; error?: string };
      if (m.ready === undefined) return;
      clearTimeout(timer);
      child.off("message", first);
      if (m.ready) resolve({ port: m.port!, ...(m.relay !== undefined ? { relay: m.relay } : {}) });
      else reject(new Error(`DNS child: ${m.error}`));
    });
    child.send({ zone, relay: opts.relay });
  });
  let nextId = 1;
  const relayOk = ready.relay !== undefined && !ready.relay.startsWith("error:");
  return {
    host: "127.0.0.1",
    port: ready.port,
    relay: relayOk ? ready.relay : undefined,
    relayError: relayOk ? undefined : ready.relay,
    counts() {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no stats from the DNS child")), 5_000);
        const onMessage = (raw: unknown) => {
          const m = raw as { stats?: number; counts?: Record<string, number> };
          if (m.stats !== id) return;
          clearTimeout(timer);
          child.off("message", onMessage);
          resolve(m.counts ?? {});
        };
        child.on("message", onMessage);
        child.send({ stats: id });
      });
    },
    reset() {
      child.send({ reset: true });
    },
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.send({ stop: true });
      const timer = setTimeout(() => child.kill("SIGKILL"), 3_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
