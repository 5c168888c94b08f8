// Canonicalisation for signing, against RFC 6376's own example, a deliberately naive reference
// (whole-body regular expressions, the way dkimpy does it) and dkimpy itself.

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { BodyHasher, canonicalHeader, rawHeader, type Canonicalization } from "../../src/auth/sign-canon.ts";

const b = (s: string) => Buffer.from(s, "latin1");
const sha = (buf: Buffer) => createHash("sha256").update(buf).digest("base64");

function hashBody(body: Buffer, c: Canonicalization, cuts: readonly number[] = []): string {
  const h = new BodyHasher(c);
  let start = 0;
  for (const cut of [...cuts, body.length]) {
    h.update(body.subarray(start, cut));
    start = cut;
  }
  return h.digest();
}

/** RFC 6376 §3.4.3/§3.4.4 done on the whole body at once, as dkimpy does (bodies ending in CRLF). */
function referenceBody(body: Buffer, c: Canonicalization): Buffer {
  let s = body.toString("latin1");
  if (c === "relaxed") s = s.replace(/[\t ]+\r\n/g, "\r\n").replace(/[\t ]+/g, " ");
  const trimmed = s.replace(/(?:\r\n)+$/, "");
  if (c === "relaxed" && trimmed === "") return Buffer.alloc(0);
  return b(`${trimmed}\r\n`);
}

/** Deterministic bodies full of the awkward bytes: WSP runs, bare CR, bare LF, NUL, 8-bit, blank lines. */
function randomBodies(count: number, seed: number): Buffer[] {
  let x = seed;
  const next = () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x;
  };
  const atoms = ["a", "b", " ", "  ", "\t", " \t ", "\r", "\n", "\r\n", "\r\n", "\r\n\r\n", "\x00", "\xe4", "\r\r\n", " \r\n"];
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    let s = "";
    const n = next() % 40;
    for (let j = 0; j < n; j++) s += atoms[next() % atoms.length];
    // Postfix always ends the body with CRLF (reference §6); an empty body stays empty.
    out.push(b(s === "" || s.endsWith("\r\n") ? s : `${s}\r\n`));
  }
  return out;
}

describe("RFC 6376 §3.4.5 example", () => {
  const headers = [rawHeader("A", b(" X")), rawHeader("B ", b(" Y\t\n\tZ  "))];
  const body = b(" C \r\nD \t E\r\n\r\n\r\n");

  it("relaxed header canonicalisation", () => {
    expect(headers.map((h) => canonicalHeader(h, "relaxed").toString("latin1"))).toEqual(["a:X", "b:Y Z"]);
  });

  it("simple header canonicalisation keeps the bytes, folds as CRLF", () => {
    expect(headers.map((h) => canonicalHeader(h, "simple").toString("latin1"))).toEqual(["A: X", "B : Y\t\r\n\tZ  "]);
  });

  it("relaxed and simple body canonicalisation", () => {
    expect(hashBody(body, "relaxed")).toBe(sha(b(" C\r\nD E\r\n")));
    expect(hashBody(body, "simple")).toBe(sha(b(" C \r\nD \t E\r\n")));
  });
});

describe("body canonicalisation", () => {
  it("empty body: CRLF for simple, nothing for relaxed (RFC 6376 §3.4.3, §3.4.4)", () => {
    expect(hashBody(b(""), "simple")).toBe(sha(b("\r\n")));
    expect(hashBody(b(""), "relaxed")).toBe(sha(b("")));
    expect(hashBody(b("\r\n\r\n"), "simple")).toBe(sha(b("\r\n")));
    expect(hashBody(b(" \t\r\n\r\n"), "relaxed")).toBe(sha(b("")));
  });

  it("a last line without CRLF gets one; its trailing blanks go as they would after SMTP adds the CRLF", () => {
    expect(hashBody(b("abc"), "simple")).toBe(sha(b("abc\r\n")));
    expect(hashBody(b("abc  "), "simple")).toBe(sha(b("abc  \r\n")));
    expect(hashBody(b("abc \t"), "relaxed")).toBe(sha(b("abc\r\n")));
    expect(hashBody(b("abc\r"), "simple")).toBe(sha(b("abc\r\r\n")));
  });

  it("bare CR and bare LF are line content, not line ends (RFC 6376 §2.8)", () => {
    expect(hashBody(b("a \rb\r\n"), "relaxed")).toBe(sha(b("a \rb\r\n")));
    expect(hashBody(b("a\n\n\r\n\r\n"), "simple")).toBe(sha(b("a\n\n\r\n")));
    expect(hashBody(b("a \n\r\n"), "relaxed")).toBe(sha(b("a \n\r\n")));
  });

  it("blank lines inside the body are kept, only trailing ones go", () => {
    expect(hashBody(b("a\r\n\r\n \r\nb\r\n\r\n"), "relaxed")).toBe(sha(b("a\r\n\r\n\r\nb\r\n")));
    expect(hashBody(b("a\r\n\r\n \r\nb\r\n\r\n"), "simple")).toBe(sha(b("a\r\n\r\n \r\nb\r\n")));
  });

  it("matches the whole-body reference for 2,000 random bodies, whole and cut at random places", () => {
    const bodies = randomBodies(2000, 42);
    let cutsTried = 0;
    bodies.forEach((body, i) => {
      for (const c of ["simple", "relaxed"] as const) {
        const expected = sha(referenceBody(body, c));
        expect(hashBody(body, c), `body #${i} ${JSON.stringify(body.toString("latin1"))} ${c}`).toBe(expected);
        if (body.length > 2) {
          const cuts = [(i * 7) % body.length, (i * 13) % body.length].sort((p, q) => p - q);
          expect(hashBody(body, c, cuts), `body #${i} cut at ${cuts.join(",")} ${c}`).toBe(expected);
          cutsTried++;
        }
      }
    });
    expect(cutsTried).toBeGreaterThan(2000);
  });

  it("gives the same hash for every one- and two-point cut of a tricky body", () => {
    const body = b("  lead\t \r\n\r\nmid \t x\r\r\n \r\n\tz  \r\n\r\n \r\n\r\n");
    for (const c of ["simple", "relaxed"] as const) {
      const expected = sha(referenceBody(body, c));
      for (let i = 0; i <= body.length; i++) {
        for (let j = i; j <= body.length; j++) {
          expect(hashBody(body, c, [i, j]), `${c} cut at ${i},${j}`).toBe(expected);
        }
      }
      // One byte per chunk: every CR is separated from its LF.
      expect(hashBody(body, c, Array.from({ length: body.length }, (_, k) => k))).toBe(expected);
    }
  });

  it("a single 16 MiB line of mixed whitespace completes and equals the reference", () => {
    const unit = b("ab \t  c\t\t d ");
    const line = Buffer.alloc(16 * 1024 * 1024);
    for (let o = 0; o < line.length; o += unit.length) unit.copy(line, o);
    const body = Buffer.concat([line, b("\r\n")]);
    for (const c of ["relaxed", "simple"] as const) {
      const h = new BodyHasher(c);
      // The way Postfix delivers it: 65,535-byte BODY packets.
      for (let o = 0; o < body.length; o += 65535) h.update(body.subarray(o, o + 65535));
      expect(h.digest(), c).toBe(sha(referenceBody(body, c)));
    }
  });

  it("long bodies, sparse and whitespace-dense, equal the reference, whole and cut anywhere", () => {
    // Long bodies take other paths than short ones: ordinary text is searched for the few
    // places that change, whitespace-dense text goes byte by byte, a body can turn from one to
    // the other, and output passes through a 64 KiB buffer. A run's SP written last before that
    // buffer is hashed must still be taken back when a CRLF follows: these units put that SP at
    // every output offset around 64 KiB.
    const bodies: Buffer[] = [];
    for (const unit of ["a\t\t", "a\t", "b  \t"]) {
      for (let m = 32760; m <= 32776; m++) bodies.push(b(`${unit.repeat(m)}\r\nz\r\n`));
    }
    let x = 99;
    const next = () => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x;
    };
    const awkward = ["  ", "\t", " \t ", "\r", "\n", "\r\n", " \r\n", "\t\r\n", "\r\r\n", " \r", "\r\n ", "\r\n\r\n", "\x00", "\xe4"];
    const dense = ["a", "bc", " ", ...awkward];
    const randomBody = (size: number, denseFrom: number) => {
      let s = "";
      while (s.length < size) {
        if (s.length >= denseFrom) s += dense[next() % dense.length];
        else s += `${"word".slice(next() % 4)}${next() % 20 === 0 ? awkward[next() % awkward.length] : " "}`;
      }
      return b(`${s}\r\n`);
    };
    for (let i = 0; i < 24; i++) {
      const size = i < 8 ? 300 + (next() % 5000) : 150_000 + (next() % 100_000);
      // Sparse text, dense whitespace, and sparse text that turns dense part way.
      const denseFrom = [Infinity, 0, next() % size][i % 3]!;
      bodies.push(randomBody(size, denseFrom));
    }
    bodies.forEach((body, i) => {
      for (const c of ["simple", "relaxed"] as const) {
        const expected = sha(referenceBody(body, c));
        const postfix = Array.from({ length: Math.floor(body.length / 65535) }, (_, k) => (k + 1) * 65535);
        const random = [next() % body.length, next() % body.length, next() % body.length].sort((p, q) => p - q);
        expect(hashBody(body, c), `body #${i} ${c}`).toBe(expected);
        expect(hashBody(body, c, postfix), `body #${i} ${c} in 65,535-byte chunks`).toBe(expected);
        expect(hashBody(body, c, random), `body #${i} ${c} cut at ${random.join(",")}`).toBe(expected);
      }
    });
  });

  it("refuses use after digest()", () => {
    const h = new BodyHasher("relaxed");
    h.digest();
    expect(() => h.update(b("x"))).toThrow(/after digest/);
    expect(() => h.digest()).toThrow(/twice/);
  });
});

describe("the reference agrees with dkimpy", () => {
  const python = ["/usr/bin/python3", "python3"].find((p) => spawnSync(p, ["-c", "import dkim"]).status === 0);
  const required = process.env["CI"] === "true";

  it.skipIf(python === undefined && !required)("on the random bodies, both canonicalisations", () => {
    if (python === undefined) throw new Error("dkimpy is not installed (apt-get install python3-dkim)");
    const bodies = randomBodies(500, 7);
    const script = [
      "import sys, json, base64, hashlib",
      "from dkim.canonicalization import Simple, Relaxed",
      "out = []",
      "for b in json.load(sys.stdin):",
      "  raw = base64.b64decode(b)",
      "  out.append([base64.b64encode(hashlib.sha256(c.canonicalize_body(raw)).digest()).decode() for c in (Simple, Relaxed)])",
      "print(json.dumps(out))",
    ].join("\n");
    const r = spawnSync(python, ["-c", script], { input: JSON.stringify(bodies.map((x) => x.toString("base64"))), encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const theirs = JSON.parse(r.stdout) as [string, string][];
    expect(theirs).toHaveLength(bodies.length);
    bodies.forEach((body, i) => {
      expect([hashBody(body, "simple"), hashBody(body, "relaxed")], JSON.stringify(body.toString("latin1"))).toEqual(theirs[i]);
    });
  });
});

describe("header fields", () => {
  it("rebuilds the wire form from the milter's value: bare LF folds become CRLF, CRLF stays", () => {
    expect(rawHeader("Subject", b(" a\n\tb")).raw.toString("latin1")).toBe("Subject: a\r\n\tb");
    expect(rawHeader("Subject", b(" a\r\n\tb")).raw.toString("latin1")).toBe("Subject: a\r\n\tb");
    expect(rawHeader("Subject", b("x")).raw.toString("latin1")).toBe("Subject:x");
    expect(rawHeader("X-Empty", b("")).raw.toString("latin1")).toBe("X-Empty:");
  });

  it("relaxed: name lower-cased, folds removed, WSP runs to one SP, value trimmed; 8-bit bytes untouched", () => {
    const value = Buffer.concat([b("  \t Gr"), Buffer.from("üße", "utf8"), b("  aus\n\t K\xf6ln \t ")]);
    const canon = canonicalHeader(rawHeader("SUBJECT", value), "relaxed");
    expect(canon).toEqual(Buffer.concat([b("subject:Gr"), Buffer.from("üße", "utf8"), b(" aus K\xf6ln")]));
    expect(canonicalHeader(rawHeader("X-Empty", b("  ")), "relaxed").toString("latin1")).toBe("x-empty:");
  });

  it("lower-cases ASCII only, so a non-ASCII byte in a name is not changed", () => {
    expect(canonicalHeader(rawHeader("X-\xc4", b(" v")), "relaxed").toString("latin1")).toBe("x-\xc4:v");
  });
});
