/**
 * A small authoritative DNS server for tests: real UDP and TCP sockets on loopback, zones as
 * JS data, per-name failure modes, and a query log so tests can prove what was (not) asked.
 *
 *   const dns = await startDnsServer({ zone: { "example.com": { TXT: "v=spf1 -all", A: "192.0.2.1" } } });
 *   createResolver({ servers: dns.servers });
 *
 * Zone data, per name (case-insensitive, trailing dot optional):
 * - A / AAAA / PTR / NS: a string or a list; CNAME: one target (followed within the zone).
 * - TXT / SPF: a string is one record; a list holds records, each a string or a list of
 *   chunks. Strings are UTF-8, Uint8Arrays are sent as they are, and anything longer than 255
 *   octets is split into several character-strings. SPF is type 99, answered only for type 99.
 * - MX: [priority, exchange] or { priority, exchange }, or a list of those.
 * - SOA: used as this name's SOA and for negative answers at and below it.
 * - ttl: TTL of the name's records. behaviour: see Behaviour, for all types or per type
 *   ({ "*": "timeout", TXT: "answer" }). raw: answer with arbitrary bytes.
 * A name that does not exist, and has no descendants, gets NXDOMAIN; an existing name without
 * the asked type gets NODATA; both with the SOA in the authority section (RFC 2308).
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server, type Socket } from "node:net";
import {
  CLASS_IN,
  decodeHeader,
  decodeMessage,
  encodeMessage,
  nameKey,
  RCODE,
  type DnsHeader,
  type DnsMessage,
  type Question,
  type ResourceRecord,
} from "../../src/dns/wire.ts";

export type Transport = "udp" | "tcp";

/**
 * answer: normal (overrides a "*" behaviour for one type). timeout: never answer.
 * servfail / refused: that RCODE. truncate: over UDP an empty answer with TC=1, so the
 * client must retry over TCP. junk: our ID and QR, then bytes that do not parse.
 * junk-foreign-id: a datagram that is not an answer to the query at all.
 * compression-loop: an answer whose name is a compression pointer to itself.
 */
export type Behaviour = "answer" | "timeout" | "servfail" | "refused" | "truncate" | "junk" | "junk-foreign-id" | "compression-loop";

export type ServedType = "A" | "AAAA" | "TXT" | "SPF" | "MX" | "PTR" | "CNAME" | "NS" | "SOA";
export type TxtChunk = string | Uint8Array;
export type TxtInput = string | (string | Uint8Array | TxtChunk[])[];
export type MxInput = readonly [number, string] | { priority: number; exchange: string };

export interface SoaInput {
  mname?: string;
  rname?: string;
  serial?: number;
  refresh?: number;
  retry?: number;
  expire?: number;
  minimum?: number;
  ttl?: number;
}

export interface NameData {
  A?: string | string[];
  AAAA?: string | string[];
  TXT?: TxtInput;
  SPF?: TxtInput;
  MX?: MxInput | MxInput[];
  PTR?: string | string[];
  NS?: string | string[];
  CNAME?: string;
  SOA?: SoaInput;
  ttl?: number;
  behaviour?: Behaviour | Partial<Record<ServedType | "*", Behaviour>>;
  raw?: (query: Uint8Array, transport: Transport) => Uint8Array | null;
}

export type Zone = Record<string, NameData>;

export interface DnsServerOptions {
  zone?: Zone;
  /** Default TTL of records, seconds. */
  ttl?: number;
  /** SOA for negative answers outside any name with its own SOA; `name` is its owner. */
  soa?: SoaInput & { name?: string };
  /** Also listen on [::1] (same port) when the host has IPv6 loopback. */
  ipv6?: boolean;
  /** A fixed port (to bring a "stopped" server back where clients expect it); default: a free one. */
  port?: number;
}

export interface QueryLogEntry {
  name: string;
  type: string;
  transport: Transport;
}

export interface DnsTestServer {
  readonly port: number;
  /** "127.0.0.1:port", plus "[::1]:port" when listening on IPv6. */
  readonly servers: string[];
  readonly ipv6: boolean;
  readonly queries: readonly QueryLogEntry[];
  count(filter?: { name?: string; type?: string; transport?: Transport }): number;
  resetLog(): void;
  setZone(zone: Zone): void;
  set(name: string, data: NameData | undefined): void;
  close(): Promise<void>;
}

const DEFAULT_SOA: Required<SoaInput> = {
  mname: "ns1.test",
  rname: "hostmaster.test",
  serial: 1,
  refresh: 3600,
  retry: 600,
  expire: 86400,
  minimum: 300,
  ttl: 300,
};

const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

function chunks(parts: readonly TxtChunk[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const part of parts) {
    const bytes = typeof part === "string" ? Buffer.from(part, "utf8") : part;
    if (bytes.length === 0) out.push(bytes);
    for (let i = 0; i < bytes.length; i += 255) out.push(bytes.subarray(i, i + 255));
  }
  return out;
}

function txtRecords(input: TxtInput | undefined): Uint8Array[][] {
  if (input === undefined) return [];
  if (typeof input === "string") return [chunks([input])];
  return input.map((rec) => chunks(Array.isArray(rec) ? rec : [rec as TxtChunk]));
}

function behaviourFor(data: NameData | undefined, type: string): Behaviour | undefined {
  const b = data?.behaviour;
  if (b === undefined || typeof b === "string") return b;
  return b[type as ServedType] ?? b["*"];
}

class ZoneServer {
  zone = new Map<string, NameData>();
  /** Every name in the zone and all its ancestors: those exist (empty non-terminals too). */
  existing = new Set<string>();
  log: QueryLogEntry[] = [];
  readonly ttl: number;
  readonly soa: SoaInput & { name?: string };

  constructor(opts: DnsServerOptions) {
    this.ttl = opts.ttl ?? 300;
    this.soa = opts.soa ?? {};
    this.setZone(opts.zone ?? {});
  }

  setZone(zone: Zone): void {
    this.zone = new Map(Object.entries(zone).map(([name, data]) => [nameKey(name), data]));
    this.reindex();
  }

  set(name: string, data: NameData | undefined): void {
    if (data) this.zone.set(nameKey(name), data);
    else this.zone.delete(nameKey(name));
    this.reindex();
  }

  private reindex(): void {
    this.existing = new Set();
    for (const key of this.zone.keys()) {
      const labels = key.split(".");
      for (let i = 0; i < labels.length; i++) this.existing.add(labels.slice(i).join("."));
    }
  }

  private soaFor(name: string): ResourceRecord {
    let owner = name;
    let soa: SoaInput | undefined;
    for (const labels = name.split("."); labels.length; labels.shift()) {
      soa = this.zone.get(labels.join("."))?.SOA;
      if (soa) {
        owner = labels.join(".");
        break;
      }
    }
    if (!soa) {
      soa = this.soa;
      owner = this.soa.name ?? "";
    }
    const s = { ...DEFAULT_SOA, ...soa };
    return {
      name: owner,
      type: "SOA",
      class: CLASS_IN,
      ttl: s.ttl,
      data: { nsname: s.mname, hostmaster: s.rname, serial: s.serial, refresh: s.refresh, retry: s.retry, expire: s.expire, minttl: s.minimum },
    };
  }

  private records(name: string, data: NameData, type: string): ResourceRecord[] {
    const common = { name, class: CLASS_IN, ttl: data.ttl ?? this.ttl };
    switch (type) {
      case "A":
      case "AAAA":
      case "PTR":
      case "NS":
        return list(data[type]).map((v) => ({ ...common, type, data: v }));
      case "CNAME":
        return list(data.CNAME).map((v) => ({ ...common, type, data: v }));
      case "TXT":
      case "SPF":
        return txtRecords(data[type]).map((v) => ({ ...common, type, data: v }));
      case "MX": {
        const mx = data.MX === undefined ? [] : typeof (data.MX as unknown[])[0] === "number" ? [data.MX as MxInput] : list(data.MX as MxInput | MxInput[]);
        return mx.map((m) => ({ ...common, type: "MX", data: "priority" in m ? { ...m } : { priority: m[0], exchange: m[1] } }));
      }
      case "SOA":
        return data.SOA ? [{ ...this.soaFor(name), ttl: data.ttl ?? this.soaFor(name).ttl }] : [];
      default:
        return [];
    }
  }

  /** The authoritative answer, chasing CNAMEs inside the zone like BIND does for in-zone targets. */
  private lookup(q: Question, transport: Transport): { behaviour?: Behaviour; rcode?: number; answers?: ResourceRecord[]; authorities?: ResourceRecord[] } {
    const type = typeof q.type === "number" ? `TYPE${q.type}` : q.type;
    const chain: ResourceRecord[] = [];
    const seen = new Set<string>();
    let name = nameKey(q.name);
    for (;;) {
      const data = this.zone.get(name);
      const behaviour = behaviourFor(data, type);
      const answerOverTcp = behaviour === "truncate" && transport === "tcp";
      if (behaviour && behaviour !== "answer" && !answerOverTcp) return { behaviour };
      if (!data) {
        const rcode = this.existing.has(name) ? RCODE.NOERROR : RCODE.NXDOMAIN;
        return { rcode, answers: chain, authorities: [this.soaFor(name)] };
      }
      const records = this.records(name, data, type);
      if (records.length) return { rcode: RCODE.NOERROR, answers: [...chain, ...records] };
      if (data.CNAME === undefined || type === "CNAME") return { rcode: RCODE.NOERROR, answers: chain, authorities: [this.soaFor(name)] };
      chain.push({ name, type: "CNAME", class: CLASS_IN, ttl: data.ttl ?? this.ttl, data: data.CNAME });
      seen.add(name);
      name = nameKey(data.CNAME);
      // A loop is served as far as it goes; telling it apart is the client's job.
      if (seen.has(name)) return { rcode: RCODE.NOERROR, answers: chain };
    }
  }

  handle(query: Uint8Array, transport: Transport): Uint8Array | null {
    let msg: DnsMessage;
    try {
      msg = decodeMessage(query);
    } catch {
      this.log.push({ name: "", type: "", transport });
      try {
        return encodeMessage({ header: { id: decodeHeader(query).id, qr: true, rcode: RCODE.FORMERR } });
      } catch {
        return null;
      }
    }
    const q = msg.questions[0];
    const id = msg.header.id;
    if (!q || msg.questions.length !== 1 || msg.header.qr) return encodeMessage({ header: { id, qr: true, rcode: RCODE.FORMERR } });
    this.log.push({ name: nameKey(q.name), type: typeof q.type === "number" ? `TYPE${q.type}` : q.type, transport });

    const raw = this.zone.get(nameKey(q.name))?.raw;
    if (raw) return raw(query, transport);

    const opt = msg.additionals.find((rr) => rr.type === "OPT");
    const udpLimit = Math.max(512, opt?.class ?? 512);
    const reply = (rcode: number, answers: ResourceRecord[] = [], authorities: ResourceRecord[] = [], extra: Partial<DnsHeader> = {}) =>
      encodeMessage({
        header: { id, qr: true, aa: true, rd: msg.header.rd, rcode, ...extra },
        questions: [q],
        answers,
        authorities,
        additionals: opt ? [{ name: "", type: "OPT", class: 1232, ttl: 0, data: new Uint8Array(0) }] : [],
      });

    const result = this.lookup(q, transport);
    switch (result.behaviour) {
      case "timeout":
        return null;
      case "servfail":
        return reply(RCODE.SERVFAIL);
      case "refused":
        return reply(RCODE.REFUSED);
      case "truncate":
        return reply(RCODE.NOERROR, [], [], { tc: true });
      case "junk":
        // A header that promises three answers, then a label that runs past the end.
        return Buffer.from([id >> 8, id & 0xff, 0x84, 0x00, 0, 1, 0, 3, 0, 0, 0, 0, 5, 0x61, 0x62]);
      case "junk-foreign-id":
        return Buffer.from([(id >> 8) ^ 0x5a, id & 0xff, 0x84, 0x00, 0xde, 0xad]);
      case "compression-loop":
        // Question name is a pointer to offset 12, i.e. to itself.
        return Buffer.from([id >> 8, id & 0xff, 0x84, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
    }
    const buf = reply(result.rcode ?? RCODE.SERVFAIL, result.answers, result.authorities);
    // RFC 1035 4.2.1 / RFC 6891: too big for the client's UDP buffer means TC=1 and no records.
    if (transport === "udp" && buf.length > udpLimit) return reply(result.rcode ?? RCODE.NOERROR, [], [], { tc: true });
    return buf;
  }
}

// ---- sockets -------------------------------------------------------------------------------

interface Listener {
  udp: UdpSocket;
  tcp: Server;
}

function listenUdp(type: "udp4" | "udp6", host: string, port: number): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(type);
    socket.once("error", reject);
    socket.bind(port, host, () => {
      socket.off("error", reject);
      resolve(socket);
    });
  });
}

function listenTcp(host: string, port: number, onConnection: (s: Socket) => void): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer(onConnection);
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}

export async function startDnsServer(opts: DnsServerOptions = {}): Promise<DnsTestServer> {
  const zs = new ZoneServer(opts);
  const connections = new Set<Socket>();

  const serveUdp = (socket: UdpSocket) => {
    // Replies to a closed client socket fail with ECONNREFUSED-ish errors; a test server shrugs.
    socket.on("error", () => {});
    socket.on("message", (msg, rinfo) => {
      const reply = zs.handle(msg, "udp");
      if (reply) socket.send(reply, rinfo.port, rinfo.address, () => {});
    });
  };
  const serveTcp = (socket: Socket) => {
    connections.add(socket);
    socket.on("close", () => connections.delete(socket));
    socket.on("error", () => {});
    let buf = Buffer.alloc(0);
    socket.on("data", (data) => {
      buf = Buffer.concat([buf, data]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const query = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + query.length);
        const reply = zs.handle(query, "tcp");
        if (!reply) continue;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(reply.length);
        socket.write(Buffer.concat([len, reply]));
      }
    });
  };

  // UDP picks a free port; TCP must get the same one, so retry if it is taken over TCP.
  const listeners: Listener[] = [];
  let port = 0;
  for (let attempt = 0; ; attempt++) {
    const udp = await listenUdp("udp4", "127.0.0.1", opts.port ?? 0);
    port = udp.address().port;
    try {
      listeners.push({ udp, tcp: await listenTcp("127.0.0.1", port, serveTcp) });
      break;
    } catch (err) {
      udp.close();
      if (attempt >= 20 || opts.port !== undefined) throw err;
    }
  }
  let ipv6 = false;
  if (opts.ipv6) {
    try {
      const udp = await listenUdp("udp6", "::1", port);
      try {
        listeners.push({ udp, tcp: await listenTcp("::1", port, serveTcp) });
        ipv6 = true;
      } catch {
        udp.close();
      }
    } catch {
      // no IPv6 loopback here
    }
  }
  for (const l of listeners) serveUdp(l.udp);

  return {
    port,
    servers: ipv6 ? [`127.0.0.1:${port}`, `[::1]:${port}`] : [`127.0.0.1:${port}`],
    ipv6,
    get queries() {
      return zs.log;
    },
    count(filter = {}) {
      const name = filter.name === undefined ? undefined : nameKey(filter.name);
      return zs.log.filter(
        (q) => (name === undefined || q.name === name) && (filter.type === undefined || q.type === filter.type) && (filter.transport === undefined || q.transport === filter.transport),
      ).length;
    },
    resetLog() {
      zs.log = [];
    },
    setZone: (zone) => zs.setZone(zone),
    set: (name, data) => zs.set(name, data),
    async close() {
      for (const c of connections) c.destroy();
      await Promise.all(
        listeners.flatMap((l) => [new Promise<void>((r) => l.udp.close(() => r())), new Promise<void>((r) => l.tcp.close(() => r()))]),
      );
    },
  };
}

// ---- the RFC 7208 test suite's zonedata --------------------------------------------------

/**
 * Converts one YAML document's `zonedata` of the openspf/pyspf RFC 7208 suite into a Zone,
 * with the semantics of pyspf's test driver (test/testspf.py):
 * - entries are { TYPE: value }; `TXT: NONE` means "no TXT record (and none generated)";
 * - a bare `TIMEOUT` entry makes every type not listed before it time out; `{ TYPE: TIMEOUT }`
 *   makes that type time out;
 * - SPF (type 99) records are also served as TXT when the name lists no TXT at all, because
 *   the suite relies on drivers doing so (see the comment at its top); `txtFromSpf: false`
 *   serves them as type 99 only.
 * Names that cannot exist on the wire (a label over 63 octets) are left out: they can never
 * be asked for.
 */
export function zoneFromSpfSuite(zonedata: Record<string, unknown>, opts: { txtFromSpf?: boolean; ttl?: number } = {}): Zone {
  const zone: Zone = {};
  for (const [name, entries] of Object.entries(zonedata ?? {})) {
    try {
      nameKey(name);
    } catch {
      continue;
    }
    const data: NameData & { A: string[]; AAAA: string[]; PTR: string[]; NS: string[]; MX: MxInput[]; TXT: TxtChunk[][]; SPF: TxtChunk[][] } = {
      A: [],
      AAAA: [],
      PTR: [],
      NS: [],
      MX: [],
      TXT: [],
      SPF: [],
    };
    if (opts.ttl !== undefined) data.ttl = opts.ttl;
    const perType: Partial<Record<ServedType | "*", Behaviour>> = {};
    const answered = new Set<string>();
    let hasTxt = false;
    let timeoutAfter = false;
    for (const entry of Array.isArray(entries) ? entries : []) {
      if (entry === "TIMEOUT") {
        timeoutAfter = true;
        break;
      }
      for (const [type, value] of Object.entries((entry ?? {}) as Record<string, unknown>)) {
        if (type === "TXT") hasTxt = true;
        if (value === "NONE") continue;
        if (value === "TIMEOUT") {
          perType[type as ServedType] = "timeout";
          continue;
        }
        answered.add(type);
        if (type === "A" || type === "AAAA" || type === "PTR" || type === "NS") data[type].push(String(value));
        else if (type === "CNAME") data.CNAME = String(value);
        else if (type === "MX" && Array.isArray(value)) data.MX.push([Number(value[0]), String(value[1])]);
        else if (type === "TXT" || type === "SPF") data[type].push(Array.isArray(value) ? value.map(String) : [String(value)]);
        else throw new Error(`zoneFromSpfSuite: unsupported entry ${type} for ${name}`);
      }
    }
    if (!hasTxt && opts.txtFromSpf !== false) data.TXT = data.SPF.map((r) => [...r]);
    if (timeoutAfter) {
      perType["*"] = "timeout";
      for (const type of answered) perType[type as ServedType] ??= "answer";
    }
    if (Object.keys(perType).length) data.behaviour = perType;
    zone[name] = data;
  }
  return zone;
}
