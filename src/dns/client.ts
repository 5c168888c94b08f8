/**
 * The transport: sends one question to the configured servers over UDP, falls back to TCP
 * for truncated answers (RFC 7766), retries and fails over, and turns RCODEs that mean
 * "this server cannot help" into DnsErrors. Interpreting answers is resolver.ts's job.
 */
import { randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import { getServers } from "node:dns";
import { connect, isIP } from "node:net";
import { DnsError, type DnsErrorCode } from "./errors.ts";
import { CLASS_IN, decodeHeader, decodeMessage, encodeQuery, nameKey, RCODE, RR_TYPE, typeCode, type DnsMessage, type RrTypeName } from "./wire.ts";

export interface ServerAddress {
  host: string;
  port: number;
  family: 4 | 6;
}

/** Accepts what dns.getServers() returns: "1.2.3.4", "1.2.3.4:5353", "::1", "[::1]:5353". */
export function parseServer(spec: string): ServerAddress {
  const s = spec.trim();
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? (isIP(s) === 6 ? [s, s] : /^([^:]+)(?::(\d+))?$/.exec(s));
  const host = m?.[1] ?? "";
  const port = m?.[2] === undefined ? 53 : Number(m[2]);
  const family = isIP(host);
  // A hostname would need a resolver to find the resolver.
  if (family === 0) throw new TypeError(`DNS server must be an IP address with an optional port: ${JSON.stringify(spec)}`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`bad DNS server port: ${JSON.stringify(spec)}`);
  return { host, port, family: family === 6 ? 6 : 4 };
}

export function formatServer(s: ServerAddress): string {
  return s.family === 6 ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`;
}

/** The servers from /etc/resolv.conf, as node:dns (c-ares) read them at startup. */
export function systemServers(): string[] {
  return getServers();
}

export type ClientEvent = "udp" | "tcp" | "tcp-fallback" | "timeout";

export interface ClientOptions {
  servers: readonly ServerAddress[];
  timeoutMs: number;
  /** Rounds over the server list. */
  tries: number;
  /** Advertised EDNS0 UDP payload size, 0 for plain RFC 1035 queries. */
  ednsPayload: number;
  signal: AbortSignal;
  onEvent?: (event: ClientEvent) => void;
}

const RCODE_ERRORS = new Map<number, DnsErrorCode>([
  [RCODE.SERVFAIL, "ESERVFAIL"],
  [RCODE.REFUSED, "EREFUSED"],
  [RCODE.NOTIMP, "ENOTIMP"],
  [RCODE.FORMERR, "EFORMERR"],
]);

const TRUNCATED = Symbol("truncated");

function cancelled(): DnsError {
  return new DnsError("ECANCELLED", "DNS resolver closed");
}

// c-ares uses ECONNREFUSED for "could not contact DNS servers", whatever the socket said.
function socketError(err: unknown, server: ServerAddress): DnsError {
  return new DnsError("ECONNREFUSED", `${formatServer(server)}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/** The answer must be for our query: same ID, a response, and the same question (RFC 5452 9.1). */
function validate(msg: DnsMessage, id: number, name: string, type: RrTypeName): DnsMessage {
  const h = msg.header;
  if (h.id !== id || !h.qr || h.opcode !== 0) throw new DnsError("EBADRESP", "answer does not belong to the query");
  const q = msg.questions[0];
  // Error answers (FORMERR, REFUSED...) may legitimately come without the question.
  if (!q && h.rcode !== RCODE.NOERROR && h.rcode !== RCODE.NXDOMAIN) return msg;
  if (msg.questions.length !== 1 || !q || nameKey(q.name) !== nameKey(name) || typeCode(q.type) !== RR_TYPE[type] || q.class !== CLASS_IN) {
    throw new DnsError("EBADRESP", "answer is for a different question");
  }
  return msg;
}

export class DnsClient {
  private readonly opts: ClientOptions;

  constructor(opts: ClientOptions) {
    this.opts = opts;
  }

  /** Resolves with a NOERROR or NXDOMAIN answer; anything else rejects with a DnsError. */
  async query(name: string, type: RrTypeName): Promise<DnsMessage> {
    let lastError: DnsError | undefined;
    // A server that answered SERVFAIL/REFUSED would say the same again: ask the next one instead.
    const gaveUp = new Set<number>();
    for (let round = 0; round < this.opts.tries; round++) {
      for (const [i, server] of this.opts.servers.entries()) {
        if (gaveUp.has(i)) continue;
        if (this.opts.signal.aborted) throw cancelled();
        let err: DnsError;
        try {
          const msg = await this.exchange(server, name, type, this.opts.ednsPayload);
          const code = RCODE_ERRORS.get(msg.header.rcode) ?? (msg.header.rcode > RCODE.NXDOMAIN ? "EBADRESP" : undefined);
          if (!code) return msg;
          err = new DnsError(code, `${formatServer(server)} answered rcode ${msg.header.rcode}`);
          gaveUp.add(i);
        } catch (e) {
          if (!(e instanceof DnsError) || e.code === "ECANCELLED") throw e;
          err = e;
        }
        // A timeout says less than an actual answer from another server, keep the latter.
        if (!lastError || lastError.code === "ETIMEOUT" || err.code !== "ETIMEOUT") lastError = err;
      }
    }
    throw lastError ?? new DnsError("ETIMEOUT", "no DNS servers configured");
  }

  private async exchange(server: ServerAddress, name: string, type: RrTypeName, edns: number): Promise<DnsMessage> {
    const id = randomInt(0, 0x10000);
    const query = encodeQuery(id, name, type, edns);
    const check = (buf: Uint8Array) => validate(decodeMessage(buf), id, name, type);
    let msg = await this.udp(server, query, id, check);
    if (msg === TRUNCATED) {
      this.opts.onEvent?.("tcp-fallback");
      msg = await this.tcp(server, query, check);
    }
    // Some old servers and middleboxes reject EDNS0 with FORMERR: ask again without it (RFC 6891 7).
    if (msg.header.rcode === RCODE.FORMERR && edns > 0) return this.exchange(server, name, type, 0);
    return msg;
  }

  /** Runs one transport attempt with the common timeout, abort and cleanup handling. */
  private attempt<T>(
    server: ServerAddress,
    start: (finish: (err: DnsError | undefined, value?: T) => void) => { close(): void; timeoutError?: () => DnsError | undefined },
  ): Promise<T> {
    const { signal, timeoutMs, onEvent } = this.opts;
    return new Promise<T>((resolve, reject) => {
      if (signal.aborted) return reject(cancelled());
      let done = false;
      let handle: ReturnType<typeof start> | undefined;
      const finish = (err: DnsError | undefined, value?: T) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        handle?.close();
        if (err) reject(err);
        else resolve(value as T);
      };
      const onAbort = () => finish(cancelled());
      const timer = setTimeout(() => {
        const instead = handle?.timeoutError?.();
        if (!instead) onEvent?.("timeout");
        finish(instead ?? new DnsError("ETIMEOUT", `no answer from ${formatServer(server)} within ${timeoutMs} ms`));
      }, timeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        handle = start(finish);
      } catch (err) {
        finish(socketError(err, server));
      }
      if (done) handle?.close();
    });
  }

  /**
   * One socket per attempt: a fresh random source port plus a random ID (RFC 5452), and a
   * connected socket so the kernel drops datagrams from other addresses and reports ICMP
   * "port unreachable" as ECONNREFUSED instead of a silent timeout.
   */
  private udp(server: ServerAddress, query: Buffer, id: number, check: (b: Uint8Array) => DnsMessage) {
    return this.attempt<DnsMessage | typeof TRUNCATED>(server, (finish) => {
      const socket = createSocket(server.family === 6 ? "udp6" : "udp4");
      let closed = false;
      // Junk that is not an answer to us is ignored (it may be spoofed), but if nothing
      // better arrives it is a more useful error than a plain timeout.
      let junk: DnsError | undefined;
      socket.on("error", (err) => finish(socketError(err, server)));
      socket.on("message", (buf) => {
        try {
          const h = decodeHeader(buf);
          if (h.id !== id || !h.qr) throw new DnsError("EBADRESP", `${formatServer(server)} sent a datagram that is not our answer`);
          if (h.tc) return finish(undefined, TRUNCATED);
          finish(undefined, check(buf));
        } catch (e) {
          const err = e instanceof DnsError ? e : new DnsError("EBADRESP", String(e));
          if (decodeHeaderId(buf) === id) finish(err);
          else junk = err;
        }
      });
      socket.connect(server.port, server.host, () => {
        if (closed) return;
        this.opts.onEvent?.("udp");
        socket.send(query, (err) => err && finish(socketError(err, server)));
      });
      const close = () => {
        closed = true;
        socket.close();
      };
      return { close, timeoutError: () => junk };
    });
  }

  /** RFC 1035 4.2.2 / RFC 7766: a two-octet length prefix on each message. */
  private tcp(server: ServerAddress, query: Buffer, check: (b: Uint8Array) => DnsMessage) {
    return this.attempt<DnsMessage>(server, (finish) => {
      const socket = connect({ host: server.host, port: server.port });
      let buf = Buffer.alloc(0);
      socket.on("connect", () => {
        this.opts.onEvent?.("tcp");
        const len = Buffer.alloc(2);
        len.writeUInt16BE(query.length);
        // write, not end: some servers drop a half-closed connection without answering
        socket.write(Buffer.concat([len, query]));
      });
      socket.on("data", (data) => {
        buf = Buffer.concat([buf, data]);
        if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
        try {
          finish(undefined, check(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        } catch (e) {
          finish(e instanceof DnsError ? e : new DnsError("EBADRESP", String(e)));
        }
      });
      socket.on("error", (err) => finish(socketError(err, server)));
      socket.on("close", () => finish(new DnsError("EBADRESP", `${formatServer(server)} closed the TCP connection before a complete answer`)));
      return { close: () => socket.destroy() };
    });
  }
}

function decodeHeaderId(buf: Uint8Array): number | undefined {
  return buf.length >= 2 ? ((buf[0] as number) << 8) | (buf[1] as number) : undefined;
}
