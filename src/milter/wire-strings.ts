// Field encodings inside milter payloads: NUL-terminated strings, argv runs, big-endian ints.

export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}

const NUL = 0;

/** Splits a payload that must be a run of NUL-terminated strings ("argv"). */
export function splitStrings(payload: Buffer, what: string): Buffer[] {
  if (payload.length === 0) return [];
  if (payload[payload.length - 1] !== NUL) {
    throw new ProtocolError(`${what}: string is not NUL-terminated`);
  }
  const out: Buffer[] = [];
  let start = 0;
  for (let i = payload.indexOf(NUL); i !== -1; i = payload.indexOf(NUL, start)) {
    out.push(payload.subarray(start, i));
    start = i + 1;
  }
  return out;
}

/** Exactly `count` NUL-terminated strings, no more, no less. */
export function expectStrings(payload: Buffer, count: number, what: string): Buffer[] {
  const strings = splitStrings(payload, what);
  if (strings.length !== count) {
    throw new ProtocolError(`${what}: expected ${count} string(s), got ${strings.length}`);
  }
  return strings;
}

export function text(bytes: Buffer): string {
  return bytes.toString("utf8");
}

/** Joins strings as NUL-terminated fields. */
export function cstrings(...parts: ReadonlyArray<string | Buffer>): Buffer {
  const buffers: Buffer[] = [];
  for (const part of parts) {
    const bytes = typeof part === "string" ? Buffer.from(part, "utf8") : part;
    if (bytes.includes(NUL)) throw new ProtocolError("a milter string field cannot contain NUL");
    buffers.push(bytes, NUL_BYTE);
  }
  return Buffer.concat(buffers);
}

export function u32(...values: number[]): Buffer {
  const out = Buffer.allocUnsafe(4 * values.length);
  values.forEach((v, i) => out.writeUInt32BE(v >>> 0, 4 * i));
  return out;
}

const NUL_BYTE = Buffer.from([NUL]);
