// The loopback DNS server of the benchmark, in its own process so that answering queries does
// not share an event loop with the load generator. Started by bench/lib/dns.ts over IPC:
//   parent → { zone, relay }          child → { ready, port, relay?: "127.53.53.53" }
//   parent → { stats: id }            child → { stats: id, counts: { "name TYPE": n } }
//   parent → { reset: true }
// `relay`: also listen on <some 127.53.53.x>:53 (UDP and TCP) and pass queries on to the test
// server. Port 53 is what /etc/resolv.conf can name, and opendmarc (libspf2 and its DMARC
// lookups) can only use the system resolver: it is given a private resolv.conf in a mount
// namespace (bench/lib/peers.ts) that names this address.

import { createSocket, type RemoteInfo, type Socket as UdpSocket } from "node:dgram";
import { connect, createServer, type Server } from "node:net";
import { startDnsServer, type DnsTestServer, type Zone } from "../test/support/dns-server.ts";

interface StartMessage {
  readonly zone: Zone;
  readonly relay: boolean;
}

const counts = new Map<string, number>();
let server: DnsTestServer | undefined;

/** Folds the test server's query log into counts and empties it, so memory stays bounded. */
function fold(): void {
  if (server === undefined) return;
  for (const q of server.queries) {
    const key = `${q.name} ${q.type}${q.transport === "tcp" ? "/tcp" : ""}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  server.resetLog();
}

function bindUdp(host: string, port: number): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const s = createSocket("udp4");
    s.once("error", reject);
    s.bind(port, host, () => {
      s.off("error", reject);
      resolve(s);
    });
  });
}

function listenTcp(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/** UDP: rewrites query IDs so that clients choosing the same ID cannot get each other's answer. */
async function startRelay(upstreamPort: number): Promise<string> {
  let lastError: unknown;
  for (let i = 53; i < 63; i++) {
    const host = `127.53.53.${i}`;
    let front: UdpSocket | undefined;
    try {
      front = await bindUdp(host, 53);
      const tcp = createServer((client) => {
        const up = connect(upstreamPort, "127.0.0.1");
        client.pipe(up).pipe(client);
        client.on("error", () => up.destroy());
        up.on("error", () => client.destroy());
      });
      await listenTcp(tcp, host, 53);
      const back = await bindUdp("127.0.0.1", 0);
      const pending = new Map<number, { id: number; rinfo: RemoteInfo; at: number }>();
      let next = 1;
      const frontSocket = front;
      frontSocket.on("error", () => {});
      back.on("error", () => {});
      frontSocket.on("message", (msg, rinfo) => {
        if (msg.length < 12) return;
        // 65,535 IDs in flight at most; a slot older than 10 s belongs to a query that was lost.
        let id = next;
        for (let tries = 0; pending.has(id) && tries < 65535; tries++) {
          const old = pending.get(id)!;
          if (Date.now() - old.at > 10_000) pending.delete(id);
          else id = (id % 65535) + 1;
        }
        next = (id % 65535) + 1;
        pending.set(id, { id: msg.readUInt16BE(0), rinfo, at: Date.now() });
        const copy = Buffer.from(msg);
        copy.writeUInt16BE(id, 0);
        back.send(copy, upstreamPort, "127.0.0.1");
      });
      back.on("message", (msg) => {
        if (msg.length < 12) return;
        const slot = pending.get(msg.readUInt16BE(0));
        if (slot === undefined) return;
        pending.delete(msg.readUInt16BE(0));
        msg.writeUInt16BE(slot.id, 0);
        frontSocket.send(msg, slot.rinfo.port, slot.rinfo.address);
      });
      return host;
    } catch (err) {
      front?.close();
      lastError = err;
    }
  }
  throw new Error(`cannot listen on 127.53.53.53-62 port 53: ${String(lastError)}`);
}

process.on("message", (raw: unknown) => {
  const msg = raw as Partial<StartMessage> & { stats?: number; reset?: boolean; stop?: boolean };
  if (msg.zone !== undefined) {
    void (async () => {
      try {
        server = await startDnsServer({ zone: msg.zone!, ttl: 3600 });
        const relay = msg.relay ? await startRelay(server.port).catch((err: unknown) => `error: ${String(err)}`) : undefined;
        setInterval(fold, 500).unref();
        process.send!({ ready: true, port: server.port, relay });
      } catch (err) {
        process.send!({ ready: false, error: String(err) });
      }
    })();
  } else if (msg.stats !== undefined) {
    fold();
    process.send!({ stats: msg.stats, counts: Object.fromEntries(counts) });
  } else if (msg.reset) {
    fold();
    counts.clear();
  } else if (msg.stop) {
    process.exit(0);
  }
});
// The parent going away ends this process too.
process.on("disconnect", () => process.exit(0));
