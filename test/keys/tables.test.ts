import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { datasetLines, parseDatasetSpec } from "../../src/keys/dataset.ts";
import { TableError } from "../../src/keys/errors.ts";
import {
  findSigningKeys,
  loadKeyTable,
  loadSigningTable,
  parseKeyTable,
  parseSigningTable,
  validateSigningTable,
  type KeyTable,
  type SigningTable,
} from "../../src/keys/tables.ts";
import { matchesHost } from "../../src/keys/hosts.ts";
import { openHostList, openKeyTable, openSigningTable } from "../../src/keys/open.ts";
import { FIXTURES } from "./helpers.ts";

function tableError(fn: () => unknown): TableError {
  try {
    fn();
  } catch (err) {
    if (err instanceof TableError) return err;
    throw err;
  }
  throw new Error("expected a TableError");
}

describe("data-set lines (opendkim-db.c flat files)", () => {
  it("cuts at # anywhere, trims, skips blanks, splits key from value at the first whitespace", () => {
    const text = "# comment\n\n  a   b c  \n\tkey#value\r\nx\ty # z\r\n   \n";
    expect(datasetLines(text)).toEqual([
      { line: 3, key: "a", value: "b c" },
      { line: 4, key: "key", value: undefined },
      { line: 5, key: "x", value: "y" },
    ]);
  });
});

describe("data-set specifications", () => {
  it("classifies the forms opendkim.conf uses", () => {
    expect(parseDatasetSpec("refile:/etc/opendkim/signing.table", "SigningTable")).toEqual({ kind: "refile", path: "/etc/opendkim/signing.table" });
    expect(parseDatasetSpec("file:/etc/opendkim/key.table", "KeyTable")).toEqual({ kind: "file", path: "/etc/opendkim/key.table" });
    expect(parseDatasetSpec("/etc/opendkim/TrustedHosts", "InternalHosts")).toEqual({ kind: "file", path: "/etc/opendkim/TrustedHosts" });
    // A comma before the first colon makes it a list even though "::1" has colons.
    expect(parseDatasetSpec("127.0.0.1, ::1", "InternalHosts")).toEqual({ kind: "csl", values: ["127.0.0.1", "::1"] });
    expect(parseDatasetSpec("csl:a.example, b.example", "PeerList")).toEqual({ kind: "csl", values: ["a.example", "b.example"] });
  });

  it("refuses database types with the way out", () => {
    const e = tableError(() => parseDatasetSpec("db:/etc/opendkim/signing.db", "SigningTable"));
    expect(e.file).toBe("SigningTable");
    expect(e.message).toMatch(/"db:" is not supported.*file:\/path/);
    expect(tableError(() => parseDatasetSpec("bogus:/x", "KeyTable")).message).toMatch(/unknown data set type "bogus:"/);
  });
});

describe("KeyTable", () => {
  it("reads the fixture as opendkim does: comments, tabs, CRLF, % and colons in paths", async () => {
    const kt = await loadKeyTable(join(FIXTURES, "key.table"), { baseDirectory: "/etc/opendkim" });
    expect([...kt.entries.keys()]).toEqual(["example", "sub", "ed", "relative", "anydomain", "colon", "crlf", "crlf2"]);
    expect(kt.entries.get("example")).toEqual({
      name: "example",
      domain: "example.com",
      selector: "mail2024",
      key: { kind: "file", path: "/etc/opendkim/keys/example.com/mail2024.private" },
      line: 4,
    });
    expect(kt.entries.get("sub")?.key).toEqual({ kind: "file", path: "/etc/opendkim/keys/sub.example.com/s1.private" });
    expect(kt.entries.get("relative")?.key).toEqual({ kind: "file", path: "/etc/opendkim/keys/example.net.private" });
    expect(kt.entries.get("anydomain")?.domain).toBe("%");
    expect(kt.entries.get("colon")?.key).toEqual({ kind: "file", path: "/srv/keys/with:colon.private" });
    expect(kt.entries.get("crlf2")).toMatchObject({ selector: "crlf2", key: { kind: "file", path: "/etc/opendkim/keys/crlf2.private" }, line: 13 });
  });

  it("keeps relative paths as written when no base directory is given", () => {
    const kt = parseKeyTable("k example.com:s:../keys/k.private\n", "kt");
    expect(kt.entries.get("k")?.key).toEqual({ kind: "file", path: "../keys/k.private" });
  });

  it("takes key data that is not a path as inline base64 DER", () => {
    const kt = parseKeyTable("inl example.com:s:MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n", "kt");
    expect(kt.entries.get("inl")?.key).toEqual({ kind: "inline", data: "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" });
  });

  it("names file, line and reason for each malformed entry", () => {
    const cases: [string, number, RegExp][] = [
      ["# c\nonly-name\n", 2, /has no value/],
      ["\n\nk example.com:sel\n", 3, /three fields/],
      ["k :sel:/k\n", 1, /domain field .* is empty/],
      ["k example.com::/k\n", 1, /selector field .* is empty/],
      ["k example.com:sel:\n", 1, /key field .* is empty/],
      ["k exa mple.com:sel:/k\n", 1, /not a valid signing domain/],
      ["k example.com:bad/sel:/k\n", 1, /not a valid selector/],
      ["k example.com:sel:keys/k.private\n", 1, /write "\.\/keys\/k\.private"/],
      ["k example.com:sel:-----BEGIN PRIVATE KEY-----\n", 1, /cannot be written on one line/],
      ["a example.com:s:/a\nb example.com:s:/b\na example.org:s:/c\n", 3, /"a" is already defined on line 1/],
    ];
    for (const [text, line, reason] of cases) {
      const e = tableError(() => parseKeyTable(text, "/etc/opendkim/key.table"));
      expect(e.file).toBe("/etc/opendkim/key.table");
      expect(e.line).toBe(line);
      expect(e.message).toMatch(reason);
      expect(e.message.startsWith(`/etc/opendkim/key.table:${line}: `)).toBe(true);
    }
  });

  it("reports a missing file by name", async () => {
    const path = join(FIXTURES, "no-such.table");
    await expect(loadKeyTable(path)).rejects.toMatchObject({ name: "TableError", file: path, line: undefined, message: `${path}: file does not exist` });
  });
});

describe("SigningTable, plain (file:)", () => {
  let kt: KeyTable;
  let st: SigningTable;
  const load = async () => {
    kt = await loadKeyTable(join(FIXTURES, "key.table"), { baseDirectory: "/etc/opendkim" });
    st = await loadSigningTable(join(FIXTURES, "signing.table"), "file");
  };
  const names = (author: string, multipleSignatures = false) =>
    findSigningKeys(st, kt, author, { multipleSignatures }).map((r) => r.keyName);

  it("tries user@host before host, and stops at the first match", async () => {
    await load();
    expect(names("boss@example.com")).toEqual(["ed"]);
    expect(names("alice@example.com")).toEqual(["example"]);
  });

  it("returns every match in opendkim's order with MultipleSignatures", async () => {
    await load();
    expect(names("boss@example.com", true)).toEqual(["ed", "example"]);
    expect(names("postmaster@example.com", true)).toEqual(["example", "anydomain"]);
  });

  it("matches .parent entries for subdomains only, nearest parent first", async () => {
    await load();
    const [r] = findSigningKeys(st, kt, "alice@mail.sub.example.com");
    expect(r).toMatchObject({ keyName: "sub", domain: "sub.example.com", selector: "s1", matched: { line: 6, pattern: ".example.com" } });
    // ".example.com" is not "example.com": the bare domain matched its own line above, not this one.
    expect(names("alice@example.com", true)).toEqual(["example"]);
  });

  it("matches case-insensitively and expands % in key name, domain, path and identity", async () => {
    await load();
    const [net] = findSigningKeys(st, kt, "Bob@Example.NET");
    expect(net).toMatchObject({ keyName: "relative", domain: "example.net", identity: "example.net" });
    const [any] = findSigningKeys(st, kt, "postmaster@Other.Test");
    expect(any).toMatchObject({
      keyName: "anydomain",
      domain: "other.test",
      selector: "default",
      key: { kind: "file", path: "/etc/opendkim/keys/other.test/default.private" },
    });
  });

  it("looks up a bare domain without the user@ forms", async () => {
    await load();
    expect(names("example.com", true)).toEqual(["example"]);
    expect(names("postmaster@nowhere.test")).toEqual(["anydomain"]);
    expect(names("nowhere.test")).toEqual([]);
  });

  it("never matches non-ASCII authors (opendkim opens the table ASCII-only)", async () => {
    await load();
    expect(names("josé@example.com")).toEqual([]);
  });

  it("signs once per key when several entries pick the same one", () => {
    const k = parseKeyTable("k example.com:s:/k\n", "kt");
    const s = parseSigningTable("example.com k\n* k\n", "st", "file");
    expect(findSigningKeys(s, k, "a@example.com", { multipleSignatures: true })).toHaveLength(1);
  });

  it("refuses refile-style wildcards, dead entries and duplicates, naming the line", () => {
    const wildcard = tableError(() => parseSigningTable("# x\n*@example.com key\n", "/etc/opendkim/signing.table", "file"));
    expect(wildcard.line).toBe(2);
    expect(wildcard.message).toMatch(/use SigningTable refile:/);
    expect(tableError(() => parseSigningTable("@example.com key\n", "st", "file")).message).toMatch(/write "example\.com"/);
    const dup = tableError(() => parseSigningTable("example.com a\nEXAMPLE.com b\n", "st", "file"));
    expect(dup.line).toBe(2);
    expect(dup.message).toMatch(/already listed on line 1/);
    expect(tableError(() => parseSigningTable("\nexample.com\n", "st", "file")).line).toBe(2);
    expect(tableError(() => parseSigningTable("example.com a b\n", "st", "file")).message).toMatch(/unexpected whitespace/);
  });
});

describe("SigningTable, refile:", () => {
  let kt: KeyTable;
  let st: SigningTable;
  const load = async () => {
    kt = await loadKeyTable(join(FIXTURES, "key.table"));
    st = await loadSigningTable(join(FIXTURES, "signing.refile"), "refile");
  };

  it("takes the first matching pattern in file order", async () => {
    await load();
    // "*@example.com" (line 4) comes before "boss@example.com" (line 5), so it wins.
    expect(findSigningKeys(st, kt, "boss@example.com").map((r) => r.keyName)).toEqual(["example"]);
    expect(findSigningKeys(st, kt, "ALICE@EXAMPLE.COM")[0]?.matched).toEqual({ file: join(FIXTURES, "signing.refile"), line: 4, pattern: "*@example.com" });
  });

  it("returns all matches in file order with MultipleSignatures", async () => {
    await load();
    expect(findSigningKeys(st, kt, "boss@example.com", { multipleSignatures: true }).map((r) => r.keyName)).toEqual(["example", "ed", "anydomain"]);
  });

  it("treats * as any text and everything else literally", async () => {
    await load();
    const [sub] = findSigningKeys(st, kt, "a@x.sub.example.com");
    expect(sub).toMatchObject({ keyName: "sub", identity: "@sub.example.com" });
    expect(findSigningKeys(st, kt, "u@mail.example.org")[0]?.keyName).toBe("colon");
    // "*.example.org" needs a dot before example.org; "u@example.org" falls through to "*".
    expect(findSigningKeys(st, kt, "u@example.org")[0]).toMatchObject({ keyName: "anydomain", domain: "example.org" });
    // "." is literal: "*@example.com" must not match "a@exampleXcom".
    const s = parseSigningTable("*@example.com k\n", "st", "refile");
    const k = parseKeyTable("k example.com:s:/k\n", "kt");
    expect(findSigningKeys(s, k, "a@exampleXcom")).toEqual([]);
    expect(findSigningKeys(s, k, "a+tag@example.com")).toHaveLength(1);
  });

  it("refuses regular-expression syntax opendkim would pass to regcomp()", () => {
    const e = tableError(() => parseSigningTable("*@example.com k\n[ab]*@example.net k\n", "st", "refile"));
    expect(e.line).toBe(2);
    expect(e.message).toMatch(/contains "\[".*only "\*" as a wildcard/);
  });
});

describe("cross-checking the tables", () => {
  it("finds a SigningTable key name missing from the KeyTable at load time", () => {
    const kt = parseKeyTable("a example.com:s:/a\n", "/etc/opendkim/key.table");
    const st = parseSigningTable("example.com a\nexample.net %\nexample.org b\n", "/etc/opendkim/signing.table", "file");
    const e = tableError(() => validateSigningTable(st, kt));
    expect(e).toMatchObject({ file: "/etc/opendkim/signing.table", line: 3 });
    expect(e.message).toMatch(/"b" is not defined in KeyTable \/etc\/opendkim\/key\.table/);
  });

  it("reports a % key name with no KeyTable entry when a message needs it", () => {
    const kt = parseKeyTable("example.com example.com:s:/a\n", "kt");
    const st = parseSigningTable("* %\n", "st", "file");
    expect(findSigningKeys(st, kt, "a@example.com")[0]?.keyName).toBe("example.com");
    const e = tableError(() => findSigningKeys(st, kt, "a@example.org"));
    expect(e).toMatchObject({ file: "st", line: 1 });
    expect(e.message).toMatch(/"example\.org" is not defined/);
  });
});

describe("opening tables from opendkim.conf data-set strings", () => {
  it("loads each table kind the spec names", async () => {
    const kt = await openKeyTable(`file:${join(FIXTURES, "key.table")}`);
    expect(kt.entries.size).toBe(8);
    expect((await openSigningTable(`refile:${join(FIXTURES, "signing.refile")}`)).kind).toBe("refile");
    expect((await openSigningTable(join(FIXTURES, "signing.table"))).kind).toBe("file");
    const hosts = await openHostList(join(FIXTURES, "trusted.hosts"), "InternalHosts");
    expect(matchesHost(hosts, "10.1.1.1")).toBe(true);
    const inline = await openHostList("192.0.2.0/24, mail.example.com", "ExternalIgnoreList");
    expect(matchesHost(inline, "192.0.2.9")).toBe(true);
    expect(matchesHost(inline, "198.51.100.1", "mail.example.com")).toBe(true);
  });

  it("gives InternalHosts opendkim's default and other lists nothing when unset", async () => {
    expect(matchesHost(await openHostList(undefined, "InternalHosts"), "::1")).toBe(true);
    expect(matchesHost(await openHostList(undefined, "ExternalIgnoreList"), "::1")).toBe(false);
  });

  it("refuses a spec of the wrong kind for the setting", async () => {
    await expect(openSigningTable("a@example.com,b@example.com")).rejects.toMatchObject({ file: "SigningTable", message: expect.stringMatching(/must be a file/) });
    await expect(openKeyTable(`refile:${join(FIXTURES, "key.table")}`)).rejects.toMatchObject({ file: "KeyTable" });
    await expect(openHostList("refile:/etc/hosts.re", "PeerList")).rejects.toMatchObject({ file: "PeerList", message: expect.stringMatching(/no patterns/) });
  });
});
