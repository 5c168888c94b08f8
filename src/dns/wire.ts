/**
 * DNS message encoding and decoding (RFC 1035 4.1, RFC 3596, RFC 6891 OPT). We need our own
 * because node:dns does not return TTLs for TXT/MX/PTR, and the cache must honour them.
 * Decoding is strict: anything that does not fit exactly is an EBADRESP DnsError, so a
 * hostile or broken server can only make a lookup fail, never crash or hang the process.
 */
import { DnsError } from "./errors.ts";
import { bytesToIpv4, bytesToIpv6, ipv4ToBytes, ipv6ToBytes } from "./ip.ts";
import { formatName, parseName } from "./names.ts";

export { formatName, nameKey, parseName } from "./names.ts";

export const RR_TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, OPT: 41, SPF: 99 } as const;
export type RrTypeName = keyof typeof RR_TYPE;
const TYPE_NAMES = new Map<number, RrTypeName>(Object.entries(RR_TYPE).map(([k, v]) => [v, k as RrTypeName]));
export const CLASS_IN = 1;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export interface SoaData {
  nsname: string;
  hostmaster: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minttl: number;
}
export interface MxData {
  exchange: string;
  priority: number;
}

interface RrCommon {
  name: string;
  class: number;
  ttl: number;
}
/** TXT/SPF data is kept as raw character-strings: the caller decides how to read bytes. */
export type ResourceRecord = RrCommon &
  (
    | { type: "A" | "AAAA" | "NS" | "CNAME" | "PTR"; data: string }
    | { type: "TXT" | "SPF"; data: Uint8Array[] }
    | { type: "MX"; data: MxData }
    | { type: "SOA"; data: SoaData }
    | { type: "OPT"; data: Uint8Array }
    | { type: number; data: Uint8Array }
  );

export interface Question {
  name: string;
  type: RrTypeName | number;
  class: number;
}

export interface DnsHeader {
  id: number;
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  ad: boolean;
  cd: boolean;
  rcode: number;
}

export interface DnsMessage {
  header: DnsHeader;
  questions: Question[];
  answers: ResourceRecord[];
  authorities: ResourceRecord[];
  additionals: ResourceRecord[];
}

export type EncodableMessage = Partial<Omit<DnsMessage, "header">> & { header: Partial<DnsHeader> & { id: number } };

export function typeCode(type: RrTypeName | number): number {
  return typeof type === "number" ? type : RR_TYPE[type];
}

function bad(what: string): never {
  throw new DnsError("EBADRESP", `malformed DNS message: ${what}`);
}

// ---- encoding ------------------------------------------------------------------------------

class Writer {
  buf = Buffer.alloc(512);
  len = 0;
  private names = new Map<string, number>();

  ensure(n: number): void {
    if (this.len + n > 65535) throw new RangeError("DNS message longer than 65535 octets");
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.min(65535, Math.max(this.buf.length * 2, this.len + n)));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf.writeUInt8(v, this.len++);
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.len);
    this.len += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.len);
    this.len += 4;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  name(text: string, compress = true): void {
    const labels = parseName(text);
    for (let i = 0; i < labels.length; i++) {
      // case-sensitive, so a message decodes to exactly the names that were encoded
      const key = formatName(labels.slice(i));
      const at = compress ? this.names.get(key) : undefined;
      if (at !== undefined) return this.u16(0xc000 | at);
      if (compress && this.len < 0x4000) this.names.set(key, this.len);
      const label = labels[i] as Uint8Array;
      this.u8(label.length);
      this.bytes(label);
    }
    this.u8(0);
  }
}

function writeRdata(w: Writer, rr: ResourceRecord): void {
  if (rr.type === "A") return w.bytes(ipv4ToBytes(rr.data));
  if (rr.type === "AAAA") return w.bytes(ipv6ToBytes(rr.data));
  if (rr.type === "NS" || rr.type === "CNAME" || rr.type === "PTR") return w.name(rr.data);
  if (rr.type === "MX") {
    w.u16(rr.data.priority);
    return w.name(rr.data.exchange);
  }
  if (rr.type === "SOA") {
    const d = rr.data;
    w.name(d.nsname);
    w.name(d.hostmaster);
    for (const v of [d.serial, d.refresh, d.retry, d.expire, d.minttl]) w.u32(v);
    return;
  }
  if (rr.type === "TXT" || rr.type === "SPF") {
    for (const chunk of rr.data) {
      if (chunk.length > 255) throw new RangeError("TXT character-string longer than 255 octets");
      w.u8(chunk.length);
      w.bytes(chunk);
    }
    return;
  }
  // OPT and unknown types carry raw rdata
  w.bytes(rr.data as Uint8Array);
}

export function encodeMessage(msg: EncodableMessage): Buffer {
  const h = msg.header;
  const w = new Writer();
  const sections = [msg.answers ?? [], msg.authorities ?? [], msg.additionals ?? []];
  w.u16(h.id);
  w.u16(
    (h.qr ? 0x8000 : 0) | ((h.opcode ?? 0) << 11) | (h.aa ? 0x400 : 0) | (h.tc ? 0x200 : 0) | (h.rd ? 0x100 : 0) |
      (h.ra ? 0x80 : 0) | (h.ad ? 0x20 : 0) | (h.cd ? 0x10 : 0) | ((h.rcode ?? 0) & 0xf),
  );
  for (const n of [msg.questions?.length ?? 0, ...sections.map((s) => s.length)]) w.u16(n);
  for (const q of msg.questions ?? []) {
    w.name(q.name);
    w.u16(typeCode(q.type));
    w.u16(q.class);
  }
  for (const rr of sections.flat()) {
    w.name(rr.name);
    w.u16(typeCode(rr.type));
    w.u16(rr.class);
    w.u32(rr.ttl);
    const lenAt = w.len;
    w.u16(0);
    writeRdata(w, rr);
    w.buf.writeUInt16BE(w.len - lenAt - 2, lenAt);
  }
  return Buffer.from(w.buf.subarray(0, w.len));
}

/** A recursive query; `ednsPayload` > 0 adds an OPT record advertising that UDP size. */
export function encodeQuery(id: number, name: string, type: RrTypeName | number, ednsPayload = 0): Buffer {
  const additionals: ResourceRecord[] = ednsPayload > 0 ? [{ name: "", type: "OPT", class: ednsPayload, ttl: 0, data: new Uint8Array(0) }] : [];
  return encodeMessage({ header: { id, rd: true }, questions: [{ name, type, class: CLASS_IN }], additionals });
}

// ---- decoding ------------------------------------------------------------------------------

class Reader {
  pos = 0;
  readonly buf: Uint8Array;
  constructor(buf: Uint8Array) {
    this.buf = buf;
  }

  need(n: number, at = this.pos): void {
    if (at + n > this.buf.length) bad(`truncated at offset ${at}`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++] as number;
  }
  u16(): number {
    return (this.u8() << 8) | this.u8();
  }
  u32(): number {
    return this.u16() * 0x10000 + this.u16();
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    return this.buf.slice(this.pos, (this.pos += n));
  }

  /**
   * A pointer must point before the start of the labels it continues (RFC 1035 4.1.4 "prior
   * occurrence"); each jump therefore strictly decreases the offset, so loops are impossible.
   */
  name(): string {
    const labels: Uint8Array[] = [];
    let pos = this.pos;
    let segmentStart = pos;
    let jumped = false;
    let wireLength = 1;
    for (;;) {
      this.need(1, pos);
      const len = this.buf[pos] as number;
      if (len === 0) {
        pos += 1;
        break;
      }
      if ((len & 0xc0) === 0xc0) {
        this.need(2, pos);
        const target = ((len & 0x3f) << 8) | (this.buf[pos + 1] as number);
        if (target >= segmentStart) bad(`compression pointer at ${pos} does not point backwards`);
        if (!jumped) this.pos = pos + 2;
        jumped = true;
        pos = segmentStart = target;
        continue;
      }
      if (len & 0xc0) bad(`unsupported label type 0x${len.toString(16)} at ${pos}`);
      this.need(len + 1, pos);
      wireLength += len + 1;
      if (wireLength > 255) bad("name longer than 255 octets");
      labels.push(this.buf.slice(pos + 1, pos + 1 + len));
      pos += len + 1;
    }
    if (!jumped) this.pos = pos;
    return formatName(labels);
  }
}

export function decodeHeader(buf: Uint8Array): DnsHeader {
  if (buf.length < 12) bad("shorter than a header");
  const flags = ((buf[2] as number) << 8) | (buf[3] as number);
  return {
    id: ((buf[0] as number) << 8) | (buf[1] as number),
    qr: !!(flags & 0x8000),
    opcode: (flags >> 11) & 0xf,
    aa: !!(flags & 0x400),
    tc: !!(flags & 0x200),
    rd: !!(flags & 0x100),
    ra: !!(flags & 0x80),
    ad: !!(flags & 0x20),
    cd: !!(flags & 0x10),
    rcode: flags & 0xf,
  };
}

function readRecord(r: Reader): ResourceRecord {
  const name = r.name();
  const code = r.u16();
  const cls = r.u16();
  const rawTtl = r.u32();
  // RFC 2181 8: a TTL with the top bit set is treated as zero
  const ttl = rawTtl > 0x7fffffff ? 0 : rawTtl;
  const rdlength = r.u16();
  r.need(rdlength);
  const end = r.pos + rdlength;
  const type = TYPE_NAMES.get(code);
  const common = { name, class: cls, ttl };
  let rr: ResourceRecord;
  if (type === "A" || type === "AAAA") {
    const want = type === "A" ? 4 : 16;
    if (rdlength !== want) bad(`${type} rdata of ${rdlength} octets`);
    const b = r.bytes(want);
    rr = { ...common, type, data: type === "A" ? bytesToIpv4(b) : bytesToIpv6(b) };
  } else if (type === "NS" || type === "CNAME" || type === "PTR") {
    rr = { ...common, type, data: r.name() };
  } else if (type === "MX") {
    const priority = r.u16();
    rr = { ...common, type, data: { priority, exchange: r.name() } };
  } else if (type === "SOA") {
    const nsname = r.name();
    const hostmaster = r.name();
    const [serial, refresh, retry, expire, minttl] = [r.u32(), r.u32(), r.u32(), r.u32(), r.u32()] as const;
    rr = { ...common, type, data: { nsname, hostmaster, serial, refresh, retry, expire, minttl } };
  } else if (type === "TXT" || type === "SPF") {
    const chunks: Uint8Array[] = [];
    while (r.pos < end) {
      const len = r.u8();
      if (r.pos + len > end) bad("character-string overruns rdata");
      chunks.push(r.bytes(len));
    }
    rr = { ...common, type, data: chunks };
  } else {
    rr = { ...common, type: type ?? code, data: r.bytes(rdlength) } as ResourceRecord;
  }
  if (r.pos !== end) bad(`rdata of ${type ?? code} record for ${name} does not match its length`);
  return rr;
}

export function decodeMessage(buf: Uint8Array): DnsMessage {
  const header = decodeHeader(buf);
  const r = new Reader(buf);
  r.pos = 4;
  const [qd, an, ns, ar] = [r.u16(), r.u16(), r.u16(), r.u16()];
  const questions: Question[] = [];
  for (let i = 0; i < qd; i++) {
    const name = r.name();
    const code = r.u16();
    questions.push({ name, type: TYPE_NAMES.get(code) ?? code, class: r.u16() });
  }
  const section = (n: number) => Array.from({ length: n }, () => readRecord(r));
  return { header, questions, answers: section(an), authorities: section(ns), additionals: section(ar) };
}
