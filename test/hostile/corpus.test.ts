// Hostile messages and envelopes through the real daemon path: the test milter client speaks to
// an in-process MilterServer running the real AuthHandler (default configuration, DNS from the
// loopback test server), so frame decoder, codec, session and handler all see each input.
// Every case asserts the outcome documented for admins in test/fixtures/hostile/README.md (a
// test below keeps the two in step), and after every case the same daemon must still serve a
// well-formed, signed message normally — on the same connection when it is still open, and on a
// new one.

import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { RelaxedHash } from "mailauth/lib/dkim/body/relaxed.js";
import { SimpleHash } from "mailauth/lib/dkim/body/simple.js";
import type { Reply } from "../../src/milter/types.ts";
import type { MilterClient } from "../support/milter-client.ts";
import { CASES, CONTINUE, RAW_MARK, readmeRow, replaceFrom, signedMessage, ZONE, type Case } from "./cases.ts";
import { authResultsOf, controlMessage, sendMessage, startDaemon, testMessage, type Daemon } from "./daemon.ts";

// ---- the daemon ----------------------------------------------------------------------------

let daemon: Daemon;
let keyDir: string;

beforeAll(async () => {
  // The signing key must not be readable by others (requireSafeKeys), which git does not keep.
  keyDir = mkdtempSync(join(tmpdir(), "authmilter-hostile-"));
  const keyFile = join(keyDir, "signer.pem");
  copyFileSync(new URL("../fixtures/hostile/dkim-rsa1024.pem", import.meta.url), keyFile);
  chmodSync(keyFile, 0o600);
  daemon = await startDaemon(ZONE, (c) => ({ ...c, signing: { ...c.signing, keys: [{ domain: "signer.example", selector: "sel", keyFile }] } }));
});

afterAll(async () => {
  await daemon?.stop();
  rmSync(keyDir, { recursive: true, force: true });
});

type Outcome = { readonly closed: true } | { readonly decision: Reply; readonly ar: string | undefined };

/** Sends a case; a connection the daemon closes (no reply) is an outcome, not an error. */
async function send(client: MilterClient, c: Case): Promise<Outcome> {
  const message = await c.message();
  if (c.rawHeader) {
    const raw = c.rawHeader;
    const encodeAndSend = client.send.bind(client);
    client.send = (cmd) => (cmd.kind === "header" && cmd.name === RAW_MARK ? client.sendRaw(raw) : encodeAndSend(cmd));
  }
  try {
    const replies = await sendMessage(client, message);
    return { decision: replies.at(-1)!, ar: authResultsOf(replies) };
  } catch (err) {
    await client.closed().catch(() => {});
    if (client.ended) return { closed: true };
    throw err;
  }
}

/** The well-formed message is served as always: DKIM, SPF and DMARC pass, no other action. */
async function expectControlServed(client: MilterClient, connect: boolean): Promise<void> {
  const replies = await sendMessage(client, await controlMessage(), { connect });
  expect(replies.at(-1)).toEqual(CONTINUE);
  expect(authResultsOf(replies)).toMatch(
    /^mx\.example\.net; dkim=pass \(1024-bit key\) header\.d=good\.example header\.i=@good\.example header\.a=rsa-sha256 header\.s=sel header\.b=\S+; spf=pass smtp\.mailfrom=good\.example; spf=pass smtp\.helo=mail\.good\.example; dmarc=pass \(p=REJECT dis=none\) header\.from=good\.example; arc=none$/,
  );
}

describe("hostile corpus through the daemon", () => {
  it("serves the well-formed control message before any abuse", async () => {
    await expectControlServed(await daemon.client(), true);
  });

  it.each(CASES.map((c) => [c.id, c] as const))("%s", async (_, c) => {
    const logsBefore = daemon.logs.length;
    const client = await daemon.client();
    const outcome = await send(client, c);
    expect(outcome).toEqual(c.expected);
    const logs = daemon.logs.slice(logsBefore);
    if ("closed" in c.expected) {
      // Closed without a reply, as documented: Postfix then applies milter_default_action.
      expect(client.replies).toEqual([]);
      expect(logs.some((l) => /^(malformed milter packet|milter protocol error); closing the connection$/.test(l.msg))).toBe(true);
    } else {
      // A second message on the same connection: nothing of the hostile one leaks into it.
      await expectControlServed(client, false);
    }
    // Nothing in our own code failed on the way (that would be the internal-error action).
    expect(logs.filter((l) => l.level >= 50).map((l) => l.msg)).toEqual([]);
    await expectControlServed(await daemon.client(), true);
  });
});

// ---- the README documents the same outcomes ------------------------------------------------

describe("test/fixtures/hostile/README.md", () => {
  const readme = () => readFileSync(new URL("../fixtures/hostile/README.md", import.meta.url), "utf8");
  it.each(CASES.map((c) => [c.id, c] as const))("documents the outcome of %s as tested", (_, c) => {
    expect(readme().split("\n")).toContain(readmeRow(c));
  });

  it("documents no case the corpus does not test", () => {
    const documented = [...readme().matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]);
    expect(documented).toEqual(CASES.map((c) => c.id));
  });
});

// ---- defects this corpus found; each test failed before its fix ------------------------------

describe("defects this corpus found, fixed", () => {
  // mailauth's relaxed body canonicalisation rescans the pending part of an unfinished line for
  // every chunk, so a long line fed in 64 KB BODY chunks costs quadratic time, synchronously:
  // a 16 MiB one-line body signed c=simple/relaxed took 8.4 s and blocked the event loop for up
  // to 1.9 s at a time. Verification now hashes bodies with our BodyHasher (linear: a 16 MiB
  // line in test/auth/sign-canon.test.ts). The check is structural, not a timing: a long-line
  // message verifies, and mailauth's body hash code never runs.
  it("verifies a long-line body without mailauth's body canonicalisation", async () => {
    const body = Buffer.from(`${"z".repeat(300_000)}\r\nshort\r\n`);
    const spies = [vi.spyOn(RelaxedHash.prototype, "update"), vi.spyOn(SimpleHash.prototype, "update")];
    try {
      for (const c of ["simple/relaxed", "simple/simple"]) {
        const replies = await sendMessage(await daemon.client(), signedMessage(`v=1; a=rsa-sha256; c=${c}; d=ok.example; s=sel; h=from:subject:date;`, { body }));
        expect(authResultsOf(replies)).toContain("dkim=pass");
      }
      for (const spy of spies) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });

  // RFC 7208 §2.4 makes postmaster@<HELO> the MAIL FROM identity of a null reverse-path, and
  // RFC 7489 §4.1 uses that result for DMARC (opendmarc and mailauth's authenticate() do). Before
  // the fix only an SPF check labelled "mailfrom" reached DMARC, so a bounce from
  // mail.good.example with From good.example failed DMARC (and was rejected when enforced).
  it("lets the SPF result of a null sender's HELO identity align for DMARC", async () => {
    const replies = await sendMessage(await daemon.client(), testMessage({ sender: "", headers: replaceFrom(" <bounce@good.example>") }));
    expect(authResultsOf(replies)).toContain("dmarc=pass (p=REJECT dis=none) header.from=good.example");
  });

  // The signer's canonicaliser ends body lines at CRLF only, mailauth's verifier also at a bare
  // LF: a body with bare LF (another MTA or milter client; Postfix always sends CRLF) failed our
  // own verification until the signer got bare LF turned into CRLF first, as Postfix delivers it.
  it("verifies its own signature on a body with bare LF", async () => {
    const message = testMessage({ client: { hostname: "localhost", address: "127.0.0.1" }, headers: replaceFrom(" <alice@signer.example>"), sender: "alice@signer.example", body: "one\ntwo\n" });
    const signedReplies = await sendMessage(await daemon.client(), message);
    const signature = signedReplies.find((r) => r.kind === "insheader" && r.name === "DKIM-Signature");
    expect(signature?.kind).toBe("insheader");
    const value = signature?.kind === "insheader" ? Buffer.from(signature.value).toString("latin1") : "";
    const verified = await sendMessage(await daemon.client(), { ...message, client: { hostname: "mail.good.example", address: "192.0.2.1" }, headers: [["DKIM-Signature", ` ${value.trimStart()}`], ...message.headers] });
    expect(authResultsOf(verified)).toMatch(/^mx\.example\.net; dkim=pass /);
  });
});
