// A deliberately small DKIM signer (rsa-sha256, simple header canonicalisation, simple body
// canonicalisation) that writes whatever tag list a hostile case asks for — duplicate tags, an
// l= longer than the body, 10,000 names in h= — which no real signer produces. A case may claim
// c=simple/relaxed when its body has no white space and no trailing empty lines, where both body
// canonicalisations give the same bytes. The key is a fixture and no t= is written, so
// signatures (and A-R header.b= prefixes) are the same on every run.

import { createHash, createPrivateKey, createPublicKey, sign } from "node:crypto";
import { readFileSync } from "node:fs";

const KEY_PEM = readFileSync(new URL("../fixtures/hostile/dkim-rsa1024.pem", import.meta.url), "utf8");
const KEY = createPrivateKey(KEY_PEM);

/** The TXT record that publishes the fixture key. */
export const FIXTURE_KEY_RECORD = `v=DKIM1; k=rsa; p=${createPublicKey(KEY).export({ type: "spki", format: "der" }).toString("base64")}`;
export const FIXTURE_KEY_PEM = KEY_PEM;

export interface CraftOptions {
  /** The message's header fields as the milter gets them: value with its leading space. */
  readonly headers: ReadonlyArray<readonly [string, string | Buffer]>;
  readonly body: Buffer;
  /** Every tag before bh= and b=, e.g. "v=1; a=rsa-sha256; c=simple/simple; d=x; s=y; h=from;". */
  readonly tags: string;
  /** Names of the fields to hash, in h= order (may differ from what `tags` claims). */
  readonly signed: readonly string[];
  /** Hash only this many body octets (what l= would say); default: the whole body. */
  readonly hashLength?: number;
}

/** simple body canonicalisation: trailing empty lines removed, CRLF at the end (RFC 6376 §3.4.3). */
function simpleBody(body: Buffer): Buffer {
  let text = body.toString("latin1");
  while (text.endsWith("\r\n\r\n")) text = text.slice(0, -2);
  if (text === "\r\n") text = "";
  if (text !== "" && !text.endsWith("\r\n")) text += "\r\n";
  if (text === "") text = "\r\n";
  return Buffer.from(text, "latin1");
}

/** The DKIM-Signature value (leading space included, no folding). */
export function craftSignature(o: CraftOptions): string {
  const canon = simpleBody(o.body);
  const hashed = o.hashLength === undefined ? canon : canon.subarray(0, o.hashLength);
  const bh = createHash("sha256").update(hashed).digest("base64");
  const value = ` ${o.tags} bh=${bh}; b=`;
  const pool = [...o.headers];
  const parts: Buffer[] = [];
  for (const name of o.signed) {
    // RFC 6376 §5.4.2: instances are used from the bottom up.
    let at = -1;
    for (let i = pool.length - 1; i >= 0; i--) {
      if (pool[i]![0].toLowerCase() === name.toLowerCase()) {
        at = i;
        break;
      }
    }
    if (at === -1) continue;
    const [n, v] = pool[at]!;
    pool.splice(at, 1);
    // As the milter client sends them: strings as UTF-8, folds (bare LF) as CRLF on the wire.
    const bytes = Buffer.isBuffer(v) ? v.toString("latin1") : Buffer.from(v, "utf8").toString("latin1");
    parts.push(Buffer.from(`${n}:${bytes.replace(/\r?\n/g, "\r\n")}\r\n`, "latin1"));
  }
  parts.push(Buffer.from(`DKIM-Signature:${value}`, "utf8"));
  const b = sign("sha256", Buffer.concat(parts), KEY).toString("base64");
  return value + b;
}
