// Property-based fuzzing of the header parsers and of the one header we write: From address
// lists, RequiredHeaders, other hosts' Authentication-Results, our Authentication-Results (no
// header injection, whatever the message or DNS said), and message files. Seeded and bounded
// (see prng.ts); no timing assertions.

import { describe, expect, it } from "vitest";
import { domainOf, parseMailboxList } from "../../src/auth/address.ts";
import { authservIdOf, parseResults } from "../../src/auth/authres.ts";
import { unfoldedText } from "../../src/auth/header-field.ts";
import { parseMessage } from "../../src/auth/offline.ts";
import { brokenHeaderRule } from "../../src/auth/required-headers.ts";
import {
  formatAuthenticationResults,
  pvalue,
  type DkimFinding,
  type DkimResult,
  type DmarcResult,
  type Findings,
  type SpfResult,
} from "../../src/auth/results.ts";
import { forAll, type Rng } from "./prng.ts";

/** Characters that mean something in RFC 5322 structured fields, plus the ones that must never pass. */
const HOSTILE = [
  "a", "b", "Z", "0", ".", "-", "_", "@", "@", " ", " ", "\t", "\r", "\n", "\r\n", "\r\n ", "\0",
  '"', '"', "\\", "(", ")", "(", "<", ">", "<", ",", ";", ":", "[", "]", "=", "é", "ü", "😀", "\u2028",
  "\ud800", "\x7f", "\x1b", "xn--", "example.org", "=?utf-8?q?x?=", "%", "+",
];

function hostile(rng: Rng, max = 120): string {
  return rng.string(HOSTILE, rng.length(max));
}

/** Any string at all: hostile pieces, raw code units (lone surrogates included), long runs. */
function anyString(rng: Rng, max = 200): string {
  return rng.weighted<() => string>([
    [5, () => hostile(rng, max)],
    [2, () => String.fromCharCode(...Array.from({ length: rng.length(max) }, () => rng.int(0x10000)))],
    [1, () => String.fromCharCode(...Array.from({ length: rng.length(max) }, () => rng.int(0x100)))],
    [1, () => rng.pick(["a", "(", '"', "\\", "\r\n"]).repeat(rng.range(1, 3000))],
  ])();
}

// ---- From: parseMailboxList and RequiredHeaders ---------------------------------------------

const ATOM = ["alice", "bob", "x", "info", "a.b", "first.last", "o'hara", "a+tag", "a_b", "q=1"];
const DOMAIN = ["example.org", "Example.COM", "mail.example.net", "xn--bcher-kva.example", "a.b.c.example", "[192.0.2.1]"];

/** A From value that names exactly `addresses`, written in one of the many legal ways. */
function fromValue(rng: Rng, addresses: readonly string[], group: boolean): string {
  const comment = () => rng.pick(["(a, b)", "(nested (comment; here))", '(quote " inside)', "(x@y.example)", "(\\) escaped)"]);
  const display = () => rng.pick(["Alice", '"Doe, John"', '"a@b.example <c@d.example>"', "=?utf-8?q?J=C3=BCrgen?=", '"quoted \\" quote"', "Jürgen"]);
  const items = addresses.map((addr) =>
    rng.weighted<() => string>([
      [2, () => addr],
      [2, () => `${display()} <${addr}>`],
      [1, () => `<${addr}>`],
      [1, () => `${addr} ${comment()}`],
      [1, () => `${comment()} ${display()} ${comment()} <${addr}> ${comment()}`],
      [1, () => `<@route.example,@other.example:${addr}>`],
    ])(),
  );
  const list = items.join(rng.pick([", ", ",", " ,\n\t"]));
  return group ? `${rng.pick(["team", '"The, Team"', "Undisclosed recipients"])}: ${list};` : list;
}

describe("parseMailboxList", () => {
  it("never throws, and what it returns are addr-specs with a lower-case domain", async () => {
    await forAll(
      "parseMailboxList on anything",
      4_000,
      (rng) => anyString(rng, 300),
      (value) => {
        const { mailboxes, group } = parseMailboxList(value);
        expect(typeof group).toBe("boolean");
        for (const m of mailboxes) {
          const at = m.lastIndexOf("@");
          expect(at).toBeGreaterThan(0);
          const domain = domainOf(m);
          expect(domain).not.toBe("");
          expect(domain).toBe(domain.toLowerCase());
          expect(domain).toMatch(/^(?:[^\s@<>()[\]\\,;:]+|\[[^\]]*\])$/);
          expect(value.toLowerCase()).toContain(domain.replace(/\.$/, ""));
        }
        expect(mailboxes.length).toBeLessThanOrEqual(value.split("@").length - 1);
      },
    );
  });

  it("finds exactly the mailboxes of a legal address list, however it is written", async () => {
    await forAll(
      "parseMailboxList on legal lists",
      3_000,
      (rng) => {
        const addresses = Array.from({ length: rng.range(1, 5) }, () => `${rng.pick(ATOM)}@${rng.pick(DOMAIN)}`);
        const group = rng.bool(0.2);
        return { addresses, group, value: fromValue(rng, addresses, group) };
      },
      ({ addresses, group, value }) => {
        const unfolded = value.replace(/\r?\n(?=[ \t])/g, "");
        const lowerDomain = (a: string) => `${a.slice(0, a.lastIndexOf("@"))}@${domainOf(a).toLowerCase()}`;
        expect(parseMailboxList(unfolded)).toEqual({ mailboxes: addresses.map(lowerDomain), group });
      },
    );
  });
});

describe("brokenHeaderRule (RequiredHeaders)", () => {
  const NAMES = ["from", "date", "sender", "reply-to", "to", "cc", "bcc", "subject", "message-id", "in-reply-to", "references", "x-other"];

  it("never throws, and passes a message only when every RFC 5322 count is met", async () => {
    await forAll(
      "brokenHeaderRule",
      4_000,
      (rng) => {
        const counts = new Map<string, number>();
        for (const name of NAMES) if (rng.bool(0.7)) counts.set(name, rng.weighted([[6, 1], [2, 0], [2, rng.range(2, 5)]]));
        const from = counts.get("from") ?? 0;
        const fromValues = Array.from({ length: from }, () => (rng.bool(0.5) ? fromValue(rng, [`a@${rng.pick(DOMAIN)}`], false) : anyString(rng, 80)));
        return { counts, fromValues };
      },
      ({ counts, fromValues }) => {
        const rule = brokenHeaderRule({ counts, fromValues });
        const n = (name: string) => counts.get(name) ?? 0;
        const mailboxes = parseMailboxList(fromValues[0] ?? "").mailboxes;
        const ok =
          n("from") === 1 &&
          mailboxes.length > 0 &&
          new Set(mailboxes.map(domainOf)).size === 1 &&
          n("date") === 1 &&
          NAMES.filter((x) => !["from", "date", "x-other"].includes(x)).every((x) => n(x) <= 1);
        if (ok) expect(rule).toBeUndefined();
        else {
          expect(typeof rule).toBe("string");
          // The rule is the text of a 550 reply: one printable line.
          expect(rule).toMatch(/^[\x20-\x7e]+$/);
        }
      },
    );
  });
});

// ---- other hosts' Authentication-Results ---------------------------------------------------

describe("authservIdOf and parseResults", () => {
  it("never throw on anything, and find no result without a method=result pair", async () => {
    await forAll(
      "authres on anything",
      4_000,
      (rng) => anyString(rng, 300),
      (value) => {
        const id = authservIdOf(value);
        if (id !== undefined) {
          expect(id).toBe(id.toLowerCase());
          expect(id).not.toBe("");
        }
        for (const r of parseResults(value)) {
          expect(r.method).toMatch(/^[a-z0-9_-]+$/);
          expect(r.result).toMatch(/^[a-z0-9_-]+$/);
        }
      },
    );
  });

  it("read the authserv-id and results of a legal header however comments and quotes hide them", async () => {
    const IDS = ["mx.example.net", "MX.Example.NET", "a-b_c.example", "example"];
    await forAll(
      "authres on legal headers",
      3_000,
      (rng) => {
        const comment = () => rng.pick(["", " (comment)", " (nested (deep; x=y) comment)", ' ("quoted; in comment")', " (a \\) b)"]);
        const id = rng.pick(IDS);
        const results = Array.from({ length: rng.range(0, 4) }, () => ({
          method: rng.pick(["spf", "dkim", "dmarc", "arc", "x-custom"]),
          result: rng.pick(["pass", "fail", "none", "softfail", "temperror"]),
          property: rng.pick(["smtp.mailfrom", "header.d", "header.from", "smtp.helo"]),
          value: rng.pick(["example.org", "a@example.org", '"quoted; value"', '"with \\" quote"', "x"]),
        }));
        const quotedId = rng.bool(0.2) ? `"${id}"` : id;
        const value =
          `${comment()} ${quotedId}${comment()}${rng.pick(["", " 1"])}` +
          (results.length === 0 ? "; none" : results.map((r) => `;${rng.pick([" ", "\n\t", "  "])}${r.method}=${r.result}${comment()} ${r.property}=${r.value}${comment()}`).join(""));
        return { id, results, value };
      },
      ({ id, results, value }) => {
        const unfolded = unfoldedText({ name: "Authentication-Results", value: Buffer.from(value, "utf8") });
        expect(authservIdOf(unfolded)).toBe(id.toLowerCase());
        const parsed = parseResults(unfolded);
        expect(parsed.map((r) => [r.method, r.result])).toEqual(results.map((r) => [r.method, r.result]));
        parsed.forEach((p, i) => {
          const want = results[i]!.value.startsWith('"') ? results[i]!.value.slice(1, -1).replace(/\\(.)/g, "$1") : results[i]!.value;
          expect(p.properties.get(results[i]!.property)).toBe(want);
        });
      },
    );
  });
});

describe("parseResults on RFC 8601 white space", () => {
  // RFC 8601 §2.2 allows CFWS around each "=" (methodspec = [CFWS] method [CFWS] "=" [CFWS]
  // result; propspec likewise). Before the fix a trusted upstream header
  // "mx.trusted.example; spf = pass smtp.mailfrom = example.org" yielded no result at all.
  it("reads results written with white space around the equals signs", () => {
    const parsed = parseResults("mx.trusted.example; spf = pass smtp.mailfrom = example.org; dkim (good)= pass header.d=example.org");
    expect(parsed.map((r) => [r.method, r.result, Object.fromEntries(r.properties)])).toEqual([
      ["spf", "pass", { "smtp.mailfrom": "example.org" }],
      ["dkim", "pass", { "header.d": "example.org" }],
    ]);
  });
});

// ---- the Authentication-Results we write ----------------------------------------------------

const DKIM_RESULTS: readonly DkimResult[] = ["pass", "fail", "neutral", "policy", "temperror", "permerror", "none"];
const SPF_RESULTS: readonly SpfResult[] = ["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"];
const DMARC_RESULTS: readonly DmarcResult[] = ["pass", "fail", "none", "temperror", "permerror"];

/** Findings whose every free-text field (what a message or a DNS answer can set) is hostile. */
function hostileFindings(rng: Rng): Findings {
  const maybe = <T>(make: () => T): T | undefined => (rng.bool(0.7) ? make() : undefined);
  const field = () => anyString(rng, 120);
  const dkim = Array.from({ length: rng.int(4) }, (): DkimFinding => {
    const d: Record<string, unknown> = { result: rng.pick(DKIM_RESULTS) };
    for (const key of ["reason", "domain", "identity", "selector", "algorithm", "signaturePrefix"]) {
      const v = maybe(field);
      if (v !== undefined) d[key] = v;
    }
    if (rng.bool(0.5)) d["keyBits"] = rng.pick([512, 1024, 2048, 0, -1, 1e21, Number.NaN]);
    return d as unknown as DkimFinding;
  });
  const spf = Array.from({ length: rng.int(3) }, () => ({
    result: rng.pick(SPF_RESULTS),
    identity: rng.pick(["mailfrom", "helo"] as const),
    domain: field(),
    ...(rng.bool(0.5) ? { reason: field() } : {}),
  }));
  const findings: { -readonly [K in keyof Findings]: Findings[K] } = { dkim, spf };
  if (rng.bool(0.7)) {
    findings.dmarc = {
      result: rng.pick(DMARC_RESULTS),
      disposition: rng.pick(["none", "quarantine", "reject"] as const),
      ...(rng.bool(0.7) ? { headerFrom: field() } : {}),
      ...(rng.bool(0.7) ? { policy: field() } : {}),
      ...(rng.bool(0.3) ? { reason: field() } : {}),
    };
  }
  if (rng.bool(0.5)) findings.arc = { result: rng.pick(["pass", "fail", "none"] as const), ...(rng.bool(0.5) ? { reason: field() } : {}) };
  return findings;
}

/** RFC 5322 and Postfix: printable ASCII, folded only with LF + TAB (INSHEADER wants LF), no NUL. */
function expectSafeHeaderValue(value: string): void {
  expect(value).not.toMatch(/[^\x20-\x7e\n\t]/);
  expect(value).not.toMatch(/\n(?!\t)/);
  expect(value).not.toMatch(/(?<!\n)\t/);
  expect(value.startsWith(" ") || value.endsWith(" ") || value.endsWith("\t")).toBe(false);
}

describe("formatAuthenticationResults and pvalue", () => {
  it("never let a header injection through: whatever the findings say, one field of printable ASCII comes out", async () => {
    await forAll(
      "formatAuthenticationResults on hostile findings",
      3_000,
      (rng) => ({ authservId: rng.pick(["mx.example.net", "a", "mx-1.example_x"]), findings: hostileFindings(rng) }),
      ({ authservId, findings }) => {
        const value = formatAuthenticationResults(authservId, findings);
        expectSafeHeaderValue(value);
        // Nothing smuggled in can change whose header it is or add a result of its own.
        const unfolded = value.replace(/\n(?=\t)/g, "");
        expect(authservIdOf(unfolded)).toBe(authservId.toLowerCase());
        const parsed = parseResults(unfolded);
        const expected = [
          ...findings.dkim.map((d) => ["dkim", d.result]),
          ...findings.spf.map((s) => ["spf", s.result]),
          ...(findings.dmarc ? [["dmarc", findings.dmarc.result]] : []),
          ...(findings.arc ? [["arc", findings.arc.result]] : []),
        ];
        expect(parsed.map((r) => [r.method, r.result])).toEqual(expected);
      },
    );
  });

  it("quotes any string into one printable property value that reads back as what was meant", async () => {
    await forAll(
      "pvalue",
      6_000,
      (rng) => anyString(rng, 100),
      (s) => {
        const v = pvalue(s);
        // Past 900 characters a value is hostile and is cut, so that no line passes 998 octets.
        const meant = s.length > 900 ? `${s.slice(0, 897)}...` : s;
        expect(v).not.toMatch(/[^\x20-\x7e]/);
        if (v.startsWith('"')) {
          // A quoted-string: closed, every " and \ inside escaped, the text itself printable.
          expect(v).toMatch(/^"(?:[^"\\]|\\.)*"$/);
          expect(v.slice(1, -1).replace(/\\(.)/g, "$1")).toBe(meant.replace(/[^\x20-\x7e]/g, "?"));
        } else {
          expect(v).toBe(s);
          expect(v).not.toMatch(/[\s"();\\]/);
        }
        // Read back by an A-R parser as one property, whatever it holds.
        const [r] = parseResults(`x; dkim=pass header.s=${v}`);
        expect(r?.properties.get("header.s")).toBe(v.startsWith('"') ? meant.replace(/[^\x20-\x7e]/g, "?") : s);
      },
    );
  });

  // A hostile From domain (mailauth reports it as header.from) or DKIM s=/d=/i= once made us write
  // a header line longer than RFC 5322 §2.1.1's 998 octets: a From domain of 100 labels of 49
  // characters (5,000 octets) came out as header.from=<5,000 octets> on one line.
  it("keeps every line of the header within 998 octets, however long the domain", () => {
    const domain = `${Array.from({ length: 100 }, () => "c".repeat(49)).join(".")}.example`;
    const value = formatAuthenticationResults("mx.example.net", {
      dkim: [{ result: "none" }],
      spf: [],
      dmarc: { result: "none", disposition: "none", headerFrom: domain },
    });
    for (const line of `Authentication-Results: ${value}`.split("\n")) expect(line.length).toBeLessThanOrEqual(998);
  });
});

// ---- message files -------------------------------------------------------------------------

const HEADER_NAMES = ["From", "To", "Subject", "X-A", "DKIM-Signature", "Received", "x"];

describe("parseMessage", () => {
  it("never throws, and hands over CRLF body lines, header names without colon or LF, LF-folded values", async () => {
    const PIECES = ["a", "b", ":", ": ", " ", "\t", "\r", "\n", "\r\n", "\r\n\r\n", "\n\n", "From:", "From ", "\0", "é", "\xff", "x".repeat(100)];
    await forAll(
      "parseMessage on anything",
      3_000,
      (rng) => (rng.bool(0.5) ? Buffer.from(rng.string(PIECES, rng.length(200)), "latin1") : rng.bytes(rng.length(400))),
      (raw) => {
        const { headers, body } = parseMessage(raw);
        const text = body.toString("latin1");
        expect(text).not.toMatch(/(?<!\r)\n/);
        if (text !== "") expect(text.endsWith("\r\n")).toBe(true);
        for (const h of headers) {
          expect(h.name).not.toMatch(/[:\n]/);
          // Folds are LF + the continuation line's white space, as Postfix hands them over.
          expect(h.value.toString("latin1")).not.toMatch(/\n(?![ \t])/);
        }
        expect(headers.length).toBeLessThanOrEqual(raw.toString("latin1").split("\n").length);
      },
    );
  });

  it("reads back the header fields and body it was written from, with CRLF or LF line ends", async () => {
    await forAll(
      "parseMessage round trip",
      3_000,
      (rng) => {
        // At least one field: a message without any is a known defect (below).
        const headers = Array.from({ length: rng.range(1, 8) }, () => {
          const words = Array.from({ length: rng.range(0, 4) }, () => rng.pick(["word", "a@b.example", "(c)", "é", '"q"', "\xff", ";"]));
          let value = words.length === 0 ? "" : ` ${words.join(" ")}`;
          if (rng.bool(0.3)) value += rng.pick(["\n\tfolded", "\n more", "\n\t"]);
          return { name: rng.pick(HEADER_NAMES), value };
        });
        const lines = Array.from({ length: rng.range(0, 6) }, () => rng.pick(["", "line", " lead", "trail ", ".", "From x", "a\rb", "\xe9\xff"]));
        const body = lines.length === 0 ? "" : lines.map((l) => `${l}\r\n`).join("");
        return { headers, body, lf: rng.bool(0.3) };
      },
      ({ headers, body, lf }) => {
        const eol = lf ? "\n" : "\r\n";
        const headText = headers.map((h) => `${h.name}:${h.value.replace(/\n/g, eol)}${eol}`).join("");
        const bodyText = lf ? body.replace(/\r\n/g, "\n") : body;
        const parsed = parseMessage(Buffer.from(`${headText}${eol}${bodyText}`, "latin1"));
        expect(parsed.headers.map((h) => [h.name, h.value.toString("latin1")])).toEqual(headers.map((h) => [h.name, h.value]));
        expect(parsed.body.toString("latin1")).toBe(body);
      },
    );
  });

  // A message with no header fields starts with the empty line (RFC 5322 §3.5). parseMessage
  // once looked only for the first blank line, so "\r\nbody line\r\nFrom: evil@x\r\n" gave a
  // From header and an empty body, and `authmilter verify` judged a From that was not there.
  it("reads a message with no header fields as an empty header and its whole body", () => {
    const parsed = parseMessage(Buffer.from("\r\nbody line\r\nFrom: evil@x\r\n", "latin1"));
    expect(parsed.headers).toEqual([]);
    expect(parsed.body.toString("latin1")).toBe("body line\r\nFrom: evil@x\r\n");
  });
});
