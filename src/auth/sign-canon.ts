// DKIM canonicalisation (RFC 6376 §3.4) for signing: header fields one at a time, the body as a
// stream of chunks cut anywhere. Every byte is looked at once and nothing but a few flags and a
// counter is carried between chunks, so cost is linear in the input whatever its line lengths
// (mailauth 7.1.0's relaxed body code is quadratic on long lines: 7.5 s for one 16 MB line).
//
// Lines end at CRLF only (RFC 6376 §2.8): a bare CR or LF is an ordinary byte of the line, which
// is what dkimpy and Mail::DKIM hash. Postfix always hands milters CRLF lines, so this only
// matters for other MTAs.

import { createHash, type Hash } from "node:crypto";

export type Canonicalization = "simple" | "relaxed";

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const TAB = 0x09;
export const CRLF = Buffer.from("\r\n", "latin1");

// Output is collected here and hashed in large pieces: one hash.update() per input byte run
// would make whitespace-heavy bodies slow.
const OUT_SIZE = 64 * 1024;

/** A streaming body canonicaliser feeding a SHA-256 hash; also counts the canonical length. */
export class BodyHasher {
  readonly canonicalization: Canonicalization;
  private readonly hash: Hash = createHash("sha256");
  private readonly out = Buffer.allocUnsafe(OUT_SIZE);
  private pos = 0;
  private length = 0;
  /** A CR was the last byte seen; whether it ends the line depends on the next byte. */
  private pendingCR = false;
  /** relaxed: whitespace seen inside the line, written as one SP only if more content follows. */
  private pendingWsp = false;
  /** The current line has canonical content (so its CRLF is written when it ends). */
  private lineHasContent = false;
  /**
   * Empty (canonical) lines seen since the last content. Written only when content follows,
   * because trailing empty lines are not part of the canonical body; a count, not bytes, so a
   * long run of empty lines costs no memory.
   */
  private emptyLines = 0;
  private done = false;

  constructor(canonicalization: Canonicalization) {
    this.canonicalization = canonicalization;
  }

  /** Bytes of canonical body hashed so far (the l= value, were we to use one). */
  get canonicalLength(): number {
    return this.length + this.pos;
  }

  update(chunk: Uint8Array): void {
    if (this.done) throw new Error("BodyHasher: update() after digest()");
    const relaxed = this.canonicalization === "relaxed";
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (this.pendingCR) {
        this.pendingCR = false;
        if (c === LF) {
          this.endLine();
          continue;
        }
        this.content(CR);
      }
      if (c === CR) this.pendingCR = true;
      else if (relaxed && (c === SP || c === TAB)) this.pendingWsp = true;
      else this.content(c);
    }
  }

  /** Ends the body; returns the base64 bh= value. */
  digest(): string {
    if (this.done) throw new Error("BodyHasher: digest() called twice");
    if (this.pendingCR) {
      this.pendingCR = false;
      this.content(CR);
    }
    // A last line without CRLF gets one (§3.4.3, §3.4.4). SMTP adds it in transit anyway, so the
    // receiver sees the terminated line, trailing whitespace and all.
    if (this.lineHasContent) this.endLine();
    this.pendingWsp = false;
    // simple: an empty body is one CRLF (§3.4.3); relaxed: an empty body stays empty (§3.4.4).
    if (this.canonicalLength === 0 && this.canonicalization === "simple") {
      this.write(CR);
      this.write(LF);
    }
    this.flush();
    this.done = true;
    return this.hash.digest("base64");
  }

  private content(c: number): void {
    if (!this.lineHasContent) {
      for (; this.emptyLines > 0; this.emptyLines--) {
        this.write(CR);
        this.write(LF);
      }
    }
    if (this.pendingWsp) {
      this.pendingWsp = false;
      this.write(SP);
    }
    this.write(c);
    this.lineHasContent = true;
  }

  private endLine(): void {
    // relaxed: whitespace at the end of a line is dropped, so a line of blanks is an empty line.
    this.pendingWsp = false;
    if (this.lineHasContent) {
      this.write(CR);
      this.write(LF);
      this.lineHasContent = false;
    } else {
      this.emptyLines++;
    }
  }

  private write(c: number): void {
    if (this.pos === OUT_SIZE) this.flush();
    this.out[this.pos++] = c;
  }

  private flush(): void {
    if (this.pos === 0) return;
    this.hash.update(this.out.subarray(0, this.pos));
    this.length += this.pos;
    this.pos = 0;
  }
}

/** A header field as it travels: name, ":", the value with CRLF folds; no final CRLF. */
export interface RawHeader {
  /** Lower-case name, for selection. */
  readonly key: string;
  readonly name: string;
  readonly raw: Buffer;
  /** Offset of the value (the byte after the colon) in `raw`. */
  readonly valueStart: number;
}

/**
 * Rebuilds the wire form of a header from the milter's (name, value): the milter joins folded
 * lines with a bare LF (reference §7); DKIM hashes them with CRLF. A CRLF already present (an MTA
 * other than Postfix) is kept as it is.
 */
export function rawHeader(name: string, value: Uint8Array): RawHeader {
  const nameBytes = Buffer.from(name, "latin1");
  let lfs = 0;
  for (let i = 0; i < value.length; i++) if (value[i] === LF && (i === 0 || value[i - 1] !== CR)) lfs++;
  const raw = Buffer.allocUnsafe(nameBytes.length + 1 + value.length + lfs);
  nameBytes.copy(raw, 0);
  raw[nameBytes.length] = 0x3a;
  let o = nameBytes.length + 1;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === LF && (i === 0 || value[i - 1] !== CR)) raw[o++] = CR;
    raw[o++] = c;
  }
  return { key: asciiLower(name.trim()), name, raw, valueStart: nameBytes.length + 1 };
}

/** ASCII-only lower-casing: header names are compared case-insensitively in ASCII only. */
export function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/**
 * One header field canonicalised, without the trailing CRLF (the caller adds it, except for the
 * DKIM-Signature field itself, §3.7).
 * relaxed (§3.4.2): name lower-cased and stripped of trailing WSP, CRLF folds removed, WSP runs
 * to one SP, WSP around the value removed. simple (§3.4.1): unchanged.
 */
export function canonicalHeader(h: RawHeader, canonicalization: Canonicalization): Buffer {
  if (canonicalization === "simple") return h.raw;
  const name = Buffer.from(asciiLower(h.name).replace(/[ \t]+$/, ""), "latin1");
  const v = h.raw;
  const out = Buffer.allocUnsafe(name.length + 1 + (v.length - h.valueStart));
  name.copy(out, 0);
  out[name.length] = 0x3a;
  let o = name.length + 1;
  let wsp = false;
  let started = false;
  for (let i = h.valueStart; i < v.length; i++) {
    const c = v[i]!;
    if (c === CR && v[i + 1] === LF) {
      i++;
      continue;
    }
    if (c === SP || c === TAB) {
      wsp = true;
      continue;
    }
    if (wsp && started) out[o++] = SP;
    wsp = false;
    started = true;
    out[o++] = c;
  }
  return out.subarray(0, o);
}
