// The hostile corpus: malformed messages and envelopes, each with the outcome documented for
// admins in test/fixtures/hostile/README.md. corpus.test.ts sends them through the daemon.

import * as C from "../../src/milter/constants.ts";
import { encodeFrame } from "../../src/milter/frame.ts";
import type { Reply } from "../../src/milter/types.ts";
import type { Zone } from "../support/dns-server.ts";
import type { TestMessage } from "../support/milter-client.ts";
import { AUTHSERV_ID, plainHeaders, testMessage, type Headers } from "./daemon.ts";
import { craftSignature, FIXTURE_KEY_RECORD } from "./dkim.ts";

const L64 = "a".repeat(64);
const L300 = "b".repeat(300);
const BIN = Uint8Array.from([0x00, 0xff, 0xfe, 0x0d, 0x0a, 0x22, 0x5c, 0x3b, 0x80]);
const MIB = 1024 * 1024;

export const ZONE: Zone = {
  "sel._domainkey.ok.example": { TXT: FIXTURE_KEY_RECORD },
  "junkkey._domainkey.ok.example": { behaviour: "junk" },
  "loop._domainkey.ok.example": { behaviour: "compression-loop" },
  "xn--bcher-kva.example": { TXT: "v=spf1 ip4:192.0.2.1 -all" },
  "_dmarc.xn--bcher-kva.example": { TXT: "v=DMARC1; p=reject" },
  "sel._domainkey.xn--bcher-kva.example": { TXT: FIXTURE_KEY_RECORD },
  // Every answer for these names is junk: our ID and flags, then bytes that do not parse.
  "junk.example": { behaviour: "junk" },
  "_dmarc.junk.example": { behaviour: "junk" },
  "sel._domainkey.junk.example": { behaviour: "junk" },
  // TXT records whose character-strings carry NUL, 0xFF, CR LF, quote, backslash, ";" and 0x80.
  "bin.example": { TXT: [["v=spf1 ", BIN, " -all"]] },
  "_dmarc.bin.example": { TXT: [["v=DMARC1; p=reject", BIN]] },
  "sel._domainkey.bin.example": { TXT: [["v=DKIM1; k=rsa; p=", BIN]] },
  // Our own signing domain (internal clients), for the signer/verifier agreement check.
  "sel._domainkey.signer.example": { TXT: FIXTURE_KEY_RECORD },
};

// ---- expected outcomes ---------------------------------------------------------------------

export type Expected = { readonly closed: true } | { readonly decision: Reply; readonly ar: string | undefined };

export const CONTINUE = { kind: "continue" } as const;
const reject = (text: string): Reply => ({ kind: "replycode", code: "550", status: "5.7.1", text });
const tempfail = (text: string): Reply => ({ kind: "replycode", code: "451", status: "4.7.1", text: `authmilter: ${text}; try again later` });
const CLOSED = { closed: true } as const;

const ar = (...results: string[]) => `${AUTHSERV_ID}; ${results.join("; ")}`;
const SPF_OK = "spf=pass smtp.mailfrom=ok.example";
const HELO_OK = "spf=pass smtp.helo=mail.good.example";
const DMARC_OK = "dmarc=pass (p=REJECT dis=none) header.from=ok.example";
const ARC = "arc=none";
/** An unsigned message from ok.example, sent by a host its SPF record lists. */
const UNSIGNED_OK = ar("dkim=none", SPF_OK, HELO_OK, DMARC_OK, ARC);
const NO_AUTHOR = ar("dkim=none", SPF_OK, HELO_OK, "dmarc=permerror reason=no-author-domain", ARC);
const DKIM_OK = (b: string, d = "ok.example") =>
  `dkim=pass (1024-bit key) header.d=${d} header.i=@${d} header.a=rsa-sha256 header.s=sel header.b=${b}`;

// ---- how a case is sent --------------------------------------------------------------------

const SIMPLE = "v=1; a=rsa-sha256; c=simple/simple;";

/** A message from ok.example carrying one crafted DKIM-Signature over From, Subject and Date. */
export function signedMessage(tags: string, o: { body?: Buffer | string; from?: string; sender?: string; hashLength?: number } = {}): TestMessage {
  const body = Buffer.isBuffer(o.body) ? o.body : Buffer.from(o.body ?? "Hello.\r\n", "latin1");
  const headers = plainHeaders(o.from ?? "<alice@ok.example>");
  const value = craftSignature({ headers, body, tags, signed: ["from", "subject", "date"], ...(o.hashLength === undefined ? {} : { hashLength: o.hashLength }) });
  return testMessage({ headers: [["DKIM-Signature", value], ...headers], body, ...(o.sender === undefined ? {} : { sender: o.sender }) });
}

const withHeader = (name: string, value: string | Buffer): Headers => plainHeaders("<alice@ok.example>", [[name, value]]);
export const replaceFrom = (value: string | Buffer): Headers => plainHeaders().map(([n, v]) => [n, n === "From" ? value : v] as const);

export const RAW_MARK = "X-Raw-Packet";

/** A header that the client sends as these exact HEADER payload bytes (the codec refuses NUL). */
function rawHeaderMessage(payload: Buffer): { message: TestMessage; raw: Buffer } {
  return { message: testMessage({ headers: withHeader(RAW_MARK, "") }), raw: encodeFrame(C.SMFIC_HEADER, payload) };
}

export interface Case {
  /** Row key in the README table. */
  readonly id: string;
  /** What is sent, for the README. */
  readonly input: string;
  readonly message: () => TestMessage | Promise<TestMessage>;
  /** Replaces the HEADER packet of the header named X-Raw-Packet with these bytes. */
  readonly rawHeader?: Buffer;
  readonly expected: Expected;
}

const nulValue = rawHeaderMessage(Buffer.from("Subject\0before\0after\0", "latin1"));
const nulName = rawHeaderMessage(Buffer.from("Sub\0ject\0value\0", "latin1"));
const hugeH = Array.from({ length: 10_000 }, (_, i) => `x-h${i}`).join(":");

export const CASES: readonly Case[] = [
  // -- From and the header block
  { id: "no-from", input: "no From field", message: () => testMessage({ headers: plainHeaders().slice(1) }), expected: { decision: reject("the message has no From field"), ar: NO_AUTHOR } },
  {
    id: "two-from",
    input: "two From fields",
    message: () => testMessage({ headers: withHeader("From", " <bob@ok.example>") }),
    expected: { decision: reject("the message has 2 From fields, RFC 5322 allows one"), ar: ar("dkim=none", SPF_OK, HELO_OK, "dmarc=permerror reason=multiple-from-fields", ARC) },
  },
  { id: "from-no-domain", input: "`From: alice`", message: () => testMessage({ headers: replaceFrom(" alice") }), expected: { decision: reject("the From field holds no address with a domain"), ar: NO_AUTHOR } },
  {
    id: "from-group-empty",
    input: "`From: Undisclosed recipients:;`",
    message: () => testMessage({ headers: replaceFrom(" Undisclosed recipients:;") }),
    expected: { decision: reject("the From field holds no address with a domain"), ar: NO_AUTHOR },
  },
  { id: "from-group-one", input: "`From: team: alice@ok.example;`", message: () => testMessage({ headers: replaceFrom(" team: alice@ok.example;") }), expected: { decision: CONTINUE, ar: UNSIGNED_OK } },
  {
    id: "from-two-domains",
    input: "`From: alice@ok.example, bob@other.example`",
    message: () => testMessage({ headers: replaceFrom(" alice@ok.example, bob@other.example") }),
    expected: {
      decision: reject("the From field names addresses in 2 domains; its author cannot be determined"),
      ar: ar("dkim=none", SPF_OK, HELO_OK, "dmarc=permerror reason=multiple-author-domains", ARC),
    },
  },
  {
    id: "from-unclosed-comment",
    input: "From: 50,000 `(` then `<alice@ok.example>`",
    message: () => testMessage({ headers: replaceFrom(` ${"(".repeat(50_000)}<alice@ok.example>`) }),
    expected: { decision: reject("the From field holds no address with a domain"), ar: NO_AUTHOR },
  },
  {
    id: "utf8-headers",
    input: "UTF-8 display name and Subject (`Jürgen 😀`)",
    message: () => testMessage({ headers: plainHeaders("Jürgen 😀 <alice@ok.example>", [["X-Note", " Grüße 😀"]]) }),
    expected: { decision: CONTINUE, ar: UNSIGNED_OK },
  },
  {
    id: "invalid-utf8-headers",
    input: "raw 8-bit bytes (invalid UTF-8: `E9 FF`, `C3 28 FF FE 80`) in From's display name and another field",
    message: () =>
      testMessage({
        headers: [
          ...replaceFrom(Buffer.concat([Buffer.from([0x20, 0xe9, 0xff, 0x20]), Buffer.from("<alice@ok.example>")])),
          ["X-Bad", Buffer.from([0x20, 0xc3, 0x28, 0xff, 0xfe, 0x80])],
        ],
      }),
    expected: { decision: CONTINUE, ar: UNSIGNED_OK },
  },
  {
    id: "8bit-from-domain",
    input: "From domain with a raw Latin-1 byte (`b\\xFCcher.example`)",
    message: () => testMessage({ headers: replaceFrom(Buffer.concat([Buffer.from(" <alice@b"), Buffer.from([0xfc]), Buffer.from("cher.example>")])) }),
    expected: { decision: CONTINUE, ar: ar("dkim=none", SPF_OK, HELO_OK, "dmarc=none header.from=xn--bcher-lm43a.example", ARC) },
  },
  { id: "nul-in-header-value", input: "HEADER packet `Subject\\0before\\0after\\0` (a NUL inside the value)", message: () => nulValue.message, rawHeader: nulValue.raw, expected: CLOSED },
  { id: "nul-in-header-name", input: "HEADER packet `Sub\\0ject\\0value\\0` (a NUL inside the name)", message: () => nulName.message, rawHeader: nulName.raw, expected: CLOSED },
  { id: "nul-in-body", input: "NUL bytes in the body", message: () => testMessage({ body: Buffer.from("a\0b\r\n\0\r\n\0") }), expected: { decision: CONTINUE, ar: UNSIGNED_OK } },
  { id: "bare-lf-body", input: "body with bare LF line ends", message: () => testMessage({ body: "one\ntwo\n\nthree" }), expected: { decision: CONTINUE, ar: UNSIGNED_OK } },
  { id: "bare-cr-body", input: "body with bare CR", message: () => testMessage({ body: "one\rtwo\r\rthree\r\n" }), expected: { decision: CONTINUE, ar: UNSIGNED_OK } },
  { id: "bare-lf-header", input: "header value `a\\nb\\nc` (LF not followed by white space)", message: () => testMessage({ headers: withHeader("X-LF", " a\nb\nc") }), expected: { decision: CONTINUE, ar: UNSIGNED_OK } },
  { id: "bare-cr-header", input: "header value `a\\rb\\r`", message: () => testMessage({ headers: withHeader("X-CR", " a\rb\r") }), expected: { decision: CONTINUE, ar: UNSIGNED_OK } },
  {
    id: "header-1mb",
    input: "one 1,000,000-byte header line (one HEADER packet, under the 1 MiB cap)",
    message: () => testMessage({ headers: withHeader("X-Long", ` ${"x".repeat(1_000_000)}`) }),
    expected: { decision: CONTINUE, ar: UNSIGNED_OK },
  },
  {
    id: "header-at-packet-cap",
    input: "one HEADER packet of exactly 1 MiB (the cap): the header block exceeds `limits.maxHeaderSize`",
    // name(6) + NUL + value + NUL = 1 MiB of payload
    message: () => testMessage({ headers: withHeader("X-Long", "x".repeat(MIB - 8)) }),
    expected: { decision: tempfail("header block over 1048576 bytes"), ar: undefined },
  },
  {
    id: "header-over-packet-cap",
    input: "one HEADER packet of 1 MiB + 1 byte (over `milter.maxPacketSize`)",
    message: () => testMessage({ headers: withHeader("X-Long", "x".repeat(MIB - 7)) }),
    expected: CLOSED,
  },
  {
    id: "10000-headers",
    input: "10,000 header fields",
    message: () => testMessage({ headers: plainHeaders("<alice@ok.example>", Array.from({ length: 10_000 }, (_, i) => [`X-H${i}`, " v"] as const)) }),
    expected: { decision: tempfail("more than 1000 header fields"), ar: undefined },
  },
  { id: "empty-body", input: "no BODY packet at all", message: () => testMessage({ body: "" }), expected: { decision: CONTINUE, ar: UNSIGNED_OK } },
  { id: "no-headers", input: "EOH right after DATA", message: () => testMessage({ headers: [] }), expected: { decision: reject("the message has no From field"), ar: NO_AUTHOR } },
  { id: "no-headers-no-body", input: "EOH right after DATA, EOB right after EOH", message: () => testMessage({ headers: [], body: "" }), expected: { decision: reject("the message has no From field"), ar: NO_AUTHOR } },

  // -- DKIM-Signature
  {
    id: "dkim-garbage",
    input: "`DKIM-Signature: \\x01garbage;;; ==;=; v`",
    message: () => testMessage({ headers: withHeader("DKIM-Signature", " \x01garbage;;; ==;=; v") }),
    expected: { decision: CONTINUE, ar: ar('dkim=neutral reason="unknown algorithm"', SPF_OK, HELO_OK, DMARC_OK, ARC) },
  },
  {
    id: "dkim-duplicate-tags",
    input: "a valid signature whose tag list has `d=` twice",
    message: () => signedMessage(`${SIMPLE} d=ok.example; d=evil.example; s=sel; h=from:subject:date;`),
    expected: {
      decision: CONTINUE,
      ar: ar(
        'dkim=neutral reason="signature syntax error" header.d=evil.example header.i=@evil.example header.a=rsa-sha256 header.s=sel header.b=o56lkz7N',
        SPF_OK,
        HELO_OK,
        DMARC_OK,
        ARC,
      ),
    },
  },
  {
    id: "dkim-huge-h",
    input: "a valid signature with 10,000 names in `h=` (absent fields)",
    message: () => signedMessage(`${SIMPLE} d=ok.example; s=sel; h=from:subject:date:${hugeH};`),
    expected: { decision: CONTINUE, ar: ar(DKIM_OK("SrIhCcSV"), SPF_OK, HELO_OK, DMARC_OK, ARC) },
  },
  {
    id: "dkim-l-beyond-body",
    input: "a signature with `l=1000` on an 8-byte body (the whole body hashed)",
    message: () => signedMessage(`${SIMPLE} d=ok.example; s=sel; l=1000; h=from:subject:date;`),
    expected: { decision: CONTINUE, ar: ar(DKIM_OK("V+pfppC8"), SPF_OK, HELO_OK, DMARC_OK, ARC) },
  },
  {
    id: "dkim-unknown-algorithm",
    input: "a signature with `a=rsa-md5`",
    message: () => signedMessage("v=1; a=rsa-md5; c=simple/simple; d=ok.example; s=sel; h=from:subject:date;"),
    expected: {
      decision: CONTINUE,
      ar: ar('dkim=neutral reason="unknown algorithm" header.d=ok.example header.i=@ok.example header.a=rsa-md5 header.s=sel header.b="A//6PKQm"', SPF_OK, HELO_OK, DMARC_OK, ARC),
    },
  },
  {
    id: "dkim-d-label-64",
    input: "`d=` with a 64-character label",
    message: () => signedMessage(`${SIMPLE} d=${L64}.example; s=sel; h=from:subject:date;`),
    expected: {
      decision: CONTINUE,
      ar: ar(`dkim=neutral reason="signature syntax error" header.d=${L64}.example header.i=@${L64}.example header.a=rsa-sha256 header.s=sel header.b=GVdPx8U9`, SPF_OK, HELO_OK, DMARC_OK, ARC),
    },
  },
  {
    id: "dkim-d-label-300",
    input: "`d=` with a 300-character label",
    message: () => signedMessage(`${SIMPLE} d=${L300}.example; s=sel; h=from:subject:date;`),
    expected: {
      decision: CONTINUE,
      ar: ar(`dkim=neutral reason="signature syntax error" header.d=${L300}.example header.i=@${L300}.example header.a=rsa-sha256 header.s=sel header.b=lONR1ZW3`, SPF_OK, HELO_OK, DMARC_OK, ARC),
    },
  },
  {
    id: "dkim-d-idn-utf8",
    input: "`d=bücher.example` (U-label, UTF-8), From in the same domain",
    message: () => signedMessage(`${SIMPLE} d=bücher.example; s=sel; h=from:subject:date;`, { from: "<alice@xn--bcher-kva.example>" }),
    expected: {
      decision: CONTINUE,
      ar: ar(DKIM_OK("PD9dLCTn", "xn--bcher-kva.example"), SPF_OK, HELO_OK, "dmarc=pass (p=REJECT dis=none) header.from=xn--bcher-kva.example", ARC),
    },
  },
  {
    id: "dkim-d-idn-alabel",
    input: "`d=xn--bcher-kva.example` (A-label)",
    message: () => signedMessage(`${SIMPLE} d=xn--bcher-kva.example; s=sel; h=from:subject:date;`, { from: "<alice@xn--bcher-kva.example>" }),
    expected: {
      decision: CONTINUE,
      ar: ar(DKIM_OK("xcivqh4+", "xn--bcher-kva.example"), SPF_OK, HELO_OK, "dmarc=pass (p=REJECT dis=none) header.from=xn--bcher-kva.example", ARC),
    },
  },

  // -- DNS answers
  {
    id: "dns-junk",
    input: "every DNS answer for the author domain is junk (key, SPF, DMARC)",
    message: () => signedMessage(`${SIMPLE} d=junk.example; s=sel; h=from:subject:date;`, { from: "<alice@junk.example>", sender: "alice@junk.example" }),
    expected: {
      decision: tempfail("a DNS lookup failed"),
      ar: ar(
        'dkim=temperror reason="DNS failure: EBADRESP" header.d=junk.example header.i=@junk.example header.a=rsa-sha256 header.s=sel header.b=fop+iQue',
        "spf=temperror smtp.mailfrom=junk.example",
        HELO_OK,
        "dmarc=temperror header.from=junk.example",
        ARC,
      ),
    },
  },
  {
    id: "dns-junk-key",
    input: "the DKIM key answer is junk; SPF and DMARC pass",
    message: () => signedMessage(`${SIMPLE} d=ok.example; s=junkkey; h=from:subject:date;`),
    expected: {
      decision: CONTINUE,
      ar: ar('dkim=temperror reason="DNS failure: EBADRESP" header.d=ok.example header.i=@ok.example header.a=rsa-sha256 header.s=junkkey header.b=pbi+mKuQ', SPF_OK, HELO_OK, DMARC_OK, ARC),
    },
  },
  {
    id: "dns-compression-loop",
    input: "the DKIM key answer's name is a compression pointer to itself",
    message: () => signedMessage(`${SIMPLE} d=ok.example; s=loop; h=from:subject:date;`),
    expected: {
      decision: CONTINUE,
      ar: ar('dkim=temperror reason="DNS failure: EBADRESP" header.d=ok.example header.i=@ok.example header.a=rsa-sha256 header.s=loop header.b=dNSZWZLR', SPF_OK, HELO_OK, DMARC_OK, ARC),
    },
  },
  {
    id: "dns-binary-txt",
    input: "key, SPF and DMARC TXT records with binary chunks (NUL, FF, CR LF, `\"`, `\\`, `;`, 80)",
    message: () => signedMessage(`${SIMPLE} d=bin.example; s=sel; h=from:subject:date;`, { from: "<alice@bin.example>", sender: "alice@bin.example" }),
    expected: {
      decision: CONTINUE,
      ar: ar(
        'dkim=permerror reason="invalid public key" header.d=bin.example header.i=@bin.example header.a=rsa-sha256 header.s=sel header.b=rrnEP7SV',
        "spf=permerror smtp.mailfrom=bin.example",
        HELO_OK,
        "dmarc=none header.from=bin.example",
        ARC,
      ),
    },
  },

  // -- domains in From
  {
    id: "from-label-64",
    input: "From domain with a 64-character label",
    message: () => testMessage({ headers: replaceFrom(` <alice@${L64}.example>`) }),
    expected: { decision: CONTINUE, ar: ar("dkim=none", SPF_OK, HELO_OK, `dmarc=none header.from=${L64}.example`, ARC) },
  },
  {
    id: "from-label-300",
    input: "From domain with a 300-character label",
    message: () => testMessage({ headers: replaceFrom(` <alice@${L300}.example>`) }),
    expected: { decision: CONTINUE, ar: ar("dkim=none", SPF_OK, HELO_OK, `dmarc=none header.from=${L300}.example`, ARC) },
  },
  {
    id: "idn-from-utf8",
    input: "`From: alice@bücher.example` (UTF-8), MAIL FROM in the A-label form",
    message: () => testMessage({ headers: replaceFrom(" <alice@bücher.example>"), sender: "alice@xn--bcher-kva.example" }),
    expected: {
      decision: CONTINUE,
      ar: ar("dkim=none", "spf=pass smtp.mailfrom=xn--bcher-kva.example", HELO_OK, "dmarc=pass (p=REJECT dis=none) header.from=xn--bcher-kva.example", ARC),
    },
  },
  {
    id: "idn-from-alabel",
    input: "`From: alice@xn--bcher-kva.example`, MAIL FROM the same",
    message: () => testMessage({ headers: replaceFrom(" <alice@xn--bcher-kva.example>"), sender: "alice@xn--bcher-kva.example" }),
    expected: {
      decision: CONTINUE,
      ar: ar("dkim=none", "spf=pass smtp.mailfrom=xn--bcher-kva.example", HELO_OK, "dmarc=pass (p=REJECT dis=none) header.from=xn--bcher-kva.example", ARC),
    },
  },
  {
    id: "idn-mail-from-utf8",
    input: "`MAIL FROM:<alice@bücher.example>` (UTF-8), From in the A-label form",
    message: () => testMessage({ headers: replaceFrom(" <alice@xn--bcher-kva.example>"), sender: "alice@bücher.example" }),
    expected: {
      decision: CONTINUE,
      ar: ar("dkim=none", "spf=pass smtp.mailfrom=xn--bcher-kva.example", HELO_OK, "dmarc=pass (p=REJECT dis=none) header.from=xn--bcher-kva.example", ARC),
    },
  },

  // -- size
  {
    id: "body-16mb-one-line",
    input: "a 16 MiB body that is one line, signed (`c=simple/relaxed`)",
    message: () => signedMessage("v=1; a=rsa-sha256; c=simple/relaxed; d=ok.example; s=sel; h=from:subject:date;", { body: Buffer.from(`${"y".repeat(16 * MIB)}\r\n`) }),
    expected: { decision: CONTINUE, ar: ar(DKIM_OK("ddvGVVt6"), SPF_OK, HELO_OK, DMARC_OK, ARC) },
  },

  // -- envelope
  {
    id: "mail-from-null",
    input: "`MAIL FROM:<>` (a bounce); HELO not aligned with From",
    message: () => testMessage({ sender: "" }),
    expected: { decision: CONTINUE, ar: ar("dkim=none", HELO_OK, "dmarc=fail (p=REJECT dis=none) header.from=ok.example", ARC) },
  },
  { id: "mail-from-utf8-local", input: "`MAIL FROM:<jösé@ok.example>`", message: () => testMessage({ sender: "jösé@ok.example" }), expected: { decision: CONTINUE, ar: UNSIGNED_OK } },
  { id: "mail-from-1000-bytes", input: "a 1,000-byte MAIL FROM address", message: () => testMessage({ sender: `${"x".repeat(1000 - "@ok.example".length)}@ok.example` }), expected: { decision: CONTINUE, ar: UNSIGNED_OK } },
  {
    id: "mail-from-label-300",
    input: "MAIL FROM domain with a 300-character label",
    message: () => testMessage({ sender: `alice@${L300}.example` }),
    expected: { decision: CONTINUE, ar: ar("dkim=none", `spf=none smtp.mailfrom=${L300}.example`, HELO_OK, "dmarc=fail (p=REJECT dis=none) header.from=ok.example", ARC) },
  },
];

/** Long runs of one character (the 64- and 300-character labels) as `a{64}`. */
function abbreviate(s: string): string {
  return s.replace(/(.)\1{15,}/g, (run, c: string) => `${c}{${run.length}}`);
}

function describeDecision(e: Expected): string {
  if ("closed" in e) return "connection closed, no reply";
  const d = e.decision;
  return d.kind === "replycode" ? `${d.code} ${d.status ?? ""} ${d.text}`.replace(/ +/g, " ") : d.kind;
}

/** The README table row of a case. */
export function readmeRow(c: Case): string {
  const arCell = "closed" in c.expected || c.expected.ar === undefined ? "—" : `\`${abbreviate(c.expected.ar.replace(`${AUTHSERV_ID}; `, ""))}\``;
  return `| \`${c.id}\` | ${c.input} | ${describeDecision(c.expected)} | ${arCell} |`;
}

