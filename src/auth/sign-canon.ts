// DKIM canonicalisation (RFC 6376 §3.4): header fields one at a time for signing, the body as a
// stream of chunks cut anywhere for signing and verifying alike. Every byte is looked at a bounded number of times (a native
// search, at most one scan back over a whitespace run, a copy) and nothing but a few flags and a
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

// Output that is not a run of input bytes passed through unchanged is collected here and hashed in
// large pieces: one hash.update() per small piece would make whitespace-heavy bodies slow.
const OUT_SIZE = 64 * 1024;
// Unchanged input runs at least this long are hashed straight from the caller's chunk (no copy).
const DIRECT_MIN = 1024;
// relaxed works on at most this much of a chunk at a time (a latin1 string of it is searched),
// so memory stays flat whatever the caller's chunk size.
const RELAXED_BLOCK = 64 * 1024;
/**
 * relaxed: the places where canonical output differs from the input inside a line — a
 * whitespace run that is not a single SP, or a single SP before CRLF. A match always starts at
 * the start of its run (a run whose first byte matches nothing is a lone SP that stays), so it
 * covers the whole run or, for " \r\n", the SP and the line end. No backtracking: linear.
 */
const RELAXED_EDIT = /[ \t]{2,}|\t| \r\n/g;
// When edits come this close together (average input bytes per edit), a byte loop is faster
// than finding them one by one.
const DENSE_SPACING = 48;
const DENSE_MIN_EDITS = 16;
const PROBE_SIZE = DENSE_MIN_EDITS * DENSE_SPACING;
// Below this many bytes the byte loop is used outright, and (COPY_MIN) copied by hand, because a
// native call costs more than the bytes.
const SEARCH_MIN = 256;
const COPY_MIN = 32;

export interface BodyHashOptions {
  /** The a= tag's hash; rsa-sha1 signatures still have to be read to be refused. */
  readonly algorithm?: "sha256" | "sha1";
  /** l=: at most this many canonical bytes are hashed (all are still counted). */
  readonly limit?: number;
}

/**
 * A streaming body canonicaliser feeding a hash (SHA-256 unless told); also counts the canonical length.
 *
 * Each chunk is split into three parts. The carried state (a CR that may start a CRLF, pending
 * whitespace, pending empty lines) is first resolved against the chunk's first bytes. Its tail —
 * the longest suffix that is only whitespace, CRLFs and a final CR — may still be dropped or
 * reshaped by what follows, so it only updates the state. Everything between ends with a content
 * byte, so its canonical form depends on nothing else: simple passes it through as it is, relaxed
 * only rewrites its whitespace runs. Work is native searching and hashing of unchanged spans
 * straight from the chunk, except in whitespace-dense text, where a byte loop copies.
 */
export class BodyHasher {
  readonly canonicalization: Canonicalization;
  private readonly relaxed: boolean;
  private readonly hash: Hash;
  private readonly limit: number;
  private hashed = 0;
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

  constructor(canonicalization: Canonicalization, options: BodyHashOptions = {}) {
    this.canonicalization = canonicalization;
    this.relaxed = canonicalization === "relaxed";
    this.hash = createHash(options.algorithm ?? "sha256");
    this.limit = options.limit ?? Infinity;
  }

  /** Bytes of canonical body so far (the l= value, were we to use one). */
  get canonicalLength(): number {
    return this.length + this.pos;
  }

  /** Bytes of canonical body that went into the hash: canonicalLength, cut at the limit. */
  get hashedLength(): number {
    return Math.min(this.canonicalLength, this.limit);
  }

  update(chunk: Uint8Array): void {
    if (this.done) throw new Error("BodyHasher: update() after digest()");
    if (chunk.length === 0) return;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (!this.relaxed) {
      this.updateSimple(buf, this.resolveCR(buf), buf.length);
      return;
    }
    // Any cut is as good as the caller's: the state carries everything across it.
    for (let s = 0; s < buf.length; s += RELAXED_BLOCK) {
      const part = s === 0 && buf.length <= RELAXED_BLOCK ? buf : buf.subarray(s, s + RELAXED_BLOCK);
      this.updateRelaxed(part, this.resolveCR(part), part.length);
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

  /** A CR carried from the last chunk: a line end if this one starts with LF. Returns where to go on. */
  private resolveCR(chunk: Buffer): number {
    if (!this.pendingCR) return 0;
    this.pendingCR = false;
    if (chunk[0] === LF) {
      this.endLine();
      return 1;
    }
    this.content(CR);
    return 0;
  }

  /** simple: bytes [i, n) of the chunk, the carried CR already resolved. */
  private updateSimple(chunk: Buffer, i: number, n: number): void {
    // The tail: CRLF* CR? (a line end is exactly an occurrence of CR LF, so reading backwards
    // finds the same line ends as reading forwards).
    let e = n;
    const trailingCR = e > i && chunk[e - 1] === CR;
    if (trailingCR) e--;
    let crlfs = 0;
    while (e - i >= 2 && chunk[e - 1] === LF && chunk[e - 2] === CR) {
      e -= 2;
      crlfs++;
    }
    if (e > i) {
      // [i, e) ends with a content byte: it goes out unchanged.
      this.startContent();
      this.emit(chunk, i, e);
      this.lineHasContent = true;
    }
    this.endLines(crlfs);
    this.pendingCR = trailingCR;
  }

  /** relaxed: bytes [i, n) of the chunk, the carried CR already resolved. */
  private updateRelaxed(chunk: Buffer, i: number, n: number): void {
    // The tail: WSP* (CRLF WSP*)* CR?
    let e = n;
    const trailingCR = e > i && chunk[e - 1] === CR;
    if (trailingCR) e--;
    const wspEnd = e;
    while (e > i && isWsp(chunk[e - 1]!)) e--;
    const trailingWsp = e < wspEnd;
    let crlfs = 0;
    while (e - i >= 2 && chunk[e - 1] === LF && chunk[e - 2] === CR) {
      e -= 2;
      crlfs++;
      while (e > i && isWsp(chunk[e - 1]!)) e--;
    }
    if (e > i) {
      // Up to the first content byte: whitespace (joining any pending) and line ends.
      let j = i;
      for (;;) {
        const c = chunk[j]!;
        if (c === SP || c === TAB) {
          this.pendingWsp = true;
          j++;
        } else if (c === CR && chunk[j + 1] === LF) {
          this.endLine();
          j += 2;
        } else {
          break;
        }
      }
      this.startContent();
      // [j, e) starts and ends with content, so every empty line in it is followed by content
      // and every whitespace run in it is settled by the byte after it.
      this.relaxedMiddle(chunk, j, e);
      this.lineHasContent = true;
    }
    this.endLines(crlfs);
    if (trailingWsp) this.pendingWsp = true;
    this.pendingCR = trailingCR;
  }

  /**
   * relaxed, for [j, e) that starts and ends with content: each whitespace run becomes one SP,
   * or nothing before a CRLF; all else is unchanged. The edits are found by a regular
   * expression on a latin1 view and the spans between them hashed from the chunk; where edits
   * are dense, the rest goes through a byte loop.
   */
  private relaxedMiddle(chunk: Buffer, j: number, e: number): void {
    // Setting up the search costs more than looping over a few bytes (chunks can be tiny).
    if (e - j < SEARCH_MIN) {
      this.relaxedLoop(chunk, j, e);
      return;
    }
    const re = RELAXED_EDIT;
    // A look at the first bytes first, so dense whitespace does not pay for a latin1 copy of it all.
    const probe = chunk.toString("latin1", j, Math.min(e, j + PROBE_SIZE));
    re.lastIndex = 0;
    let found = 0;
    while (found < DENSE_MIN_EDITS && re.test(probe)) found++;
    if (found === DENSE_MIN_EDITS && re.lastIndex < found * DENSE_SPACING) {
      this.relaxedLoop(chunk, j, e);
      return;
    }
    const s = chunk.toString("latin1", j, e);
    re.lastIndex = 0;
    let last = 0; // s[last] is not whitespace, and everything before it is written
    let edits = 0;
    while (re.test(s)) {
      const end = re.lastIndex;
      if (s.charCodeAt(end - 1) === LF) {
        // " \r\n": drop the SP, keep the line end.
        this.emit(chunk, j + last, j + end - 3);
        last = end - 2;
      } else {
        // A whitespace run [start, end); the byte after it is content or a CR.
        let start = end - 1;
        while (start > last && isWsp(s.charCodeAt(start - 1))) start--;
        this.emit(chunk, j + last, j + start);
        if (!(s.charCodeAt(end) === CR && s.charCodeAt(end + 1) === LF)) this.write(SP);
        last = end;
      }
      if (++edits >= DENSE_MIN_EDITS && end < edits * DENSE_SPACING) {
        this.relaxedLoop(chunk, j + last, e);
        return;
      }
    }
    this.emit(chunk, j + last, e);
  }

  /**
   * relaxed, for [k, e) that ends with content and follows content or a line end: the same as
   * relaxedMiddle, one byte at a time, through `out`.
   */
  private relaxedLoop(chunk: Buffer, k: number, e: number): void {
    const out = this.out;
    let o = this.pos;
    let prevWsp = 0;
    while (k < e) {
      if (o === OUT_SIZE) {
        // A run's SP is not final until the run ends (a CRLF after it takes it back): keep it.
        this.pos = o - prevWsp;
        this.flush();
        out[0] = SP;
        o = prevWsp;
      }
      // Each byte writes out[o] and advances o by at most one, so `limit` bytes fit in `out`.
      const limit = Math.min(e, k + (OUT_SIZE - o));
      const state = squeeze(chunk, k, limit, e, out, o, prevWsp);
      o = state >>> 1;
      prevWsp = state & 1;
      k = limit;
    }
    this.pos = o;
  }

  /** Output before a content byte: pending empty lines and (relaxed) pending whitespace. */
  private startContent(): void {
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
  }

  private content(c: number): void {
    this.startContent();
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

  /** `count` line ends in a row, with nothing but whitespace between them. */
  private endLines(count: number): void {
    if (count === 0) return;
    this.endLine();
    this.emptyLines += count - 1;
  }

  /** Bytes [s, e) of the chunk, unchanged. */
  private emit(chunk: Buffer, s: number, e: number): void {
    const n = e - s;
    if (n <= 0) return;
    if (n >= DIRECT_MIN) {
      this.flush();
      this.hashBytes(chunk.subarray(s, e));
      this.length += n;
      return;
    }
    if (this.pos + n > OUT_SIZE) this.flush();
    if (n < COPY_MIN) {
      const out = this.out;
      let o = this.pos;
      for (let k = s; k < e; k++) out[o++] = chunk[k]!;
    } else {
      chunk.copy(this.out, this.pos, s, e);
    }
    this.pos += n;
  }

  private write(c: number): void {
    if (this.pos === OUT_SIZE) this.flush();
    this.out[this.pos++] = c;
  }

  private flush(): void {
    if (this.pos === 0) return;
    this.hashBytes(this.out.subarray(0, this.pos));
    this.length += this.pos;
    this.pos = 0;
  }

  private hashBytes(bytes: Buffer): void {
    const room = this.limit - this.hashed;
    if (room <= 0) return;
    this.hash.update(room >= bytes.length ? bytes : bytes.subarray(0, room));
    this.hashed += Math.min(room, bytes.length);
  }
}

/**
 * The relaxed byte loop over chunk[k, limit), writing from out[o]; `e` ends the content (a CR
 * there is not followed by LF). Whitespace is written as SP and only the first byte of a run
 * advances o; a CRLF after a run writes over its SP. Returns o * 2 + (whether the last byte was
 * whitespace).
 *
 * The inner loop has no data-dependent branch but the one for CR: a mispredicted branch per
 * word would cost more than the byte. CR is handled outside it, which measured about twice as
 * fast (V8 13, x86-64) as handling it inside on lines of 40+ bytes, and somewhat slower on lines
 * of a few bytes.
 */
function squeeze(chunk: Buffer, k: number, limit: number, e: number, out: Buffer, o: number, prevWsp: number): number {
  while (k < limit) {
    for (; k < limit; k++) {
      const c = chunk[k]!;
      if (c === CR) break;
      const wsp = WSP_BYTE[c]!;
      out[o] = WSP_TO_SP[c]!;
      o += 1 - (wsp & prevWsp);
      prevWsp = wsp;
    }
    if (k === limit) break;
    if (k + 1 < limit && chunk[k + 1] === LF) {
      // A line end: it takes the place of the SP of a run before it. Two bytes in, at most two out.
      o -= prevWsp;
      out[o] = CR;
      out[o + 1] = LF;
      o += 2;
      k += 2;
    } else {
      // A CR at the end of the block whose LF comes in the next one, or a bare CR.
      if (prevWsp === 1 && k + 1 < e && chunk[k + 1] === LF) o--;
      out[o++] = CR;
      k++;
    }
    prevWsp = 0;
  }
  return o * 2 + prevWsp;
}

/** 1 for SP and HTAB, else 0. */
const WSP_BYTE = new Uint8Array(256);
WSP_BYTE[SP] = 1;
WSP_BYTE[TAB] = 1;
/** Every byte to itself, but HTAB to SP. */
const WSP_TO_SP = Uint8Array.from({ length: 256 }, (_, c) => (c === TAB ? SP : c));

function isWsp(c: number): boolean {
  return c === SP || c === TAB;
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
