// A private, throw-away Postfix instance per test file: its own config, queue, data directory and
// log file under one temp dir, SMTP on a free loopback port, and every message relayed to an
// in-process sink (smtp-sink.ts) so the test reads back exactly what Postfix would have sent on.
// Nothing leaves loopback: no DNS (none on CI machines), relayhost is an IP literal.

import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, renameSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { findExecutable } from "./prereq.ts";
import { freePort, pollUntil, waitForPort } from "./ports.ts";
import { run, type CommandResult } from "./run.ts";
import { startSmtpSink, type SinkMessage } from "./smtp-sink.ts";

export type MilterDefaultAction = "tempfail" | "accept" | "reject" | "quarantine";

export interface PostfixOptions {
  /** Milter socket for smtpd_milters and non_smtpd_milters, e.g. "inet:127.0.0.1:8891". */
  readonly milter?: string;
  /** Default "tempfail" (Debian 12's Postfix 3.7 default, reference §11). */
  readonly milterDefaultAction?: MilterDefaultAction;
  /** Extra main.cf settings; they win over the harness's own. */
  readonly mainCf?: Readonly<Record<string, string>>;
}

export interface PostfixInstance {
  /** The temp dir holding everything of this instance. */
  readonly dir: string;
  readonly configDir: string;
  readonly smtpPort: number;
  readonly sinkPort: number;
  /** Runs swaks against this instance; `args` come after --server/--port/--timeout. */
  swaks(args: readonly string[]): Promise<CommandResult>;
  /** Submits through the non-SMTP path: sendmail(1) → postdrop → pickup → cleanup. */
  sendmail(message: string, args?: readonly string[]): Promise<CommandResult>;
  /** Messages the sink has received so far. */
  delivered(): readonly SinkMessage[];
  /** Waits until at least `count` messages reached the sink; returns all of them. */
  waitForDelivered(count: number, timeoutMs?: number): Promise<readonly SinkMessage[]>;
  /** Waits for the first delivered message that satisfies `match`. */
  waitForMessage(match: (message: SinkMessage) => boolean, timeoutMs?: number): Promise<SinkMessage>;
  /** The whole maillog so far. */
  log(): string;
  /** Waits until the maillog matches; returns the match (groups included). */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** The queue id cleanup logged for the message with this Message-ID (angle brackets included). */
  queueIdOf(messageId: string, timeoutMs?: number): Promise<string>;
  /** Stops Postfix (master and its children) and the sink, removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

// Postfix's daemon_directory (Debian's, then the Red Hat family's); "master" on the PATH could be anything.
const MASTER = ["/usr/lib/postfix/sbin/master", "/usr/libexec/postfix/master"].find((p) => existsSync(p)) ?? "/usr/lib/postfix/sbin/master";
const SENDMAIL = "/usr/sbin/sendmail";
const SWAKS = findExecutable("swaks") ?? "swaks";
const DIR_PREFIX = "authmilter-postfix-";
const DEFAULT_WAIT_MS = 20_000;

function mainCf(dir: string, smtpPort: number, sinkPort: number, options: PostfixOptions): string {
  const settings: Record<string, string> = {
    compatibility_level: "3.6",
    queue_directory: join(dir, "queue"),
    data_directory: join(dir, "data"),
    // Postfix ≥ 3.4 logs to a file through postlogd; the file must lie under a listed prefix.
    maillog_file: join(dir, "maillog"),
    maillog_file_prefixes: dir,
    myhostname: "mx.authmilter.test",
    mydomain: "authmilter.test",
    myorigin: "$myhostname",
    inet_interfaces: "127.0.0.1",
    inet_protocols: "ipv4",
    mynetworks: "127.0.0.0/8",
    // Nothing is delivered locally: every recipient domain is relayed to the sink.
    mydestination: "",
    local_recipient_maps: "",
    alias_maps: "",
    alias_database: "",
    relay_domains: "static:ALL",
    // Clients posing via XCLIENT as 192.0.2.1 are outside mynetworks; relay_domains=static:ALL lets
    // them reach any domain while keeping the mandatory reject_unauth_destination in place.
    smtpd_relay_restrictions: "permit_mynetworks, reject_unauth_destination",
    relayhost: `[127.0.0.1]:${sinkPort}`,
    // No DNS on test machines: no PTR lookups for clients, no MX lookups for the relay.
    smtpd_peername_lookup: "no",
    smtp_dns_support_level: "disabled",
    // swaks --xclient ADDR=… NAME=… LOGIN=… HELO=… makes one loopback connection look external.
    smtpd_authorized_xclient_hosts: "127.0.0.0/8",
    smtpd_milters: options.milter ?? "",
    non_smtpd_milters: options.milter ?? "",
    milter_default_action: options.milterDefaultAction ?? "tempfail",
    // A message deferred by a transient error is retried within the test's patience.
    queue_run_delay: "1s",
    minimal_backoff_time: "1s",
    maximal_backoff_time: "2s",
    biff: "no",
    ...options.mainCf,
  };
  return `${Object.entries(settings)
    .map(([name, value]) => `${name} = ${value}`)
    .join("\n")}\n`;
}

// chroot "n" everywhere: a chroot would need copies of /etc files inside the queue directory.
function masterCf(smtpPort: number): string {
  return `${[
    `127.0.0.1:${smtpPort} inet n - n - - smtpd`,
    "pickup    unix  n - n 60   1 pickup",
    "cleanup   unix  n - n -    0 cleanup",
    "qmgr      unix  n - n 300  1 qmgr",
    "rewrite   unix  - - n -    - trivial-rewrite",
    "bounce    unix  - - n -    0 bounce",
    "defer     unix  - - n -    0 bounce",
    "trace     unix  - - n -    0 bounce",
    "verify    unix  - - n -    1 verify",
    "flush     unix  n - n 1000? 0 flush",
    "proxymap  unix  - - n -    - proxymap",
    "smtp      unix  - - n -    - smtp",
    "relay     unix  - - n -    - smtp",
    "showq     unix  n - n -    - showq",
    "error     unix  - - n -    - error",
    "retry     unix  - - n -    - error",
    "discard   unix  - - n -    - discard",
    "anvil     unix  - - n -    1 anvil",
    "scache    unix  - - n -    1 scache",
    // Postfix 3.7 needs this service for maillog_file.
    "postlog   unix-dgram n - n - 1 postlogd",
  ].join("\n")}\n`;
}

// --- alternate_config_directories in the default main.cf ------------------------------------
// sendmail -C DIR hands DIR to the setgid postdrop, which (for callers other than root) only
// accepts a config directory listed in /etc/postfix/main.cf. Each instance adds its own entry and
// removes it on stop; entries of earlier runs whose directory is gone are pruned, so the file
// does not grow. Test files run in parallel processes, hence the lock.
//
// The file is edited here rather than with postconf -e, and keeps its old mtime: every Postfix
// program that reads a main.cf changed less than ~2 s ago rereads it every 300 ms until it has
// "cooled down" (util/load_file.c), which would add seconds to each start and stop.

const DEFAULT_MAIN_CF = "/etc/postfix/main.cf";
const PARAM = "alternate_config_directories";
const LOCK_DIR = join(tmpdir(), "authmilter-e2e-postfix-main.cf.lock");

async function withMainCfLock<T>(work: () => T): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      // A holder that died leaves the lock behind; nobody holds it for more than milliseconds.
      try {
        if (Date.now() - statSync(LOCK_DIR).mtimeMs > 30_000) rmSync(LOCK_DIR, { recursive: true, force: true });
      } catch {
        // released meanwhile
      }
      if (Date.now() > deadline) throw new Error(`cannot take ${LOCK_DIR}; remove it if no test is running`);
      await sleep(25);
    }
  }
  try {
    return work();
  } finally {
    rmSync(LOCK_DIR, { recursive: true, force: true });
  }
}

async function editAlternateConfigDirs(change: (dirs: string[]) => string[]): Promise<void> {
  // Root (the only user who can start an instance) passes postdrop's check anyway; a Postfix
  // installed with "No configuration" has no main.cf to list anything in.
  if (!existsSync(DEFAULT_MAIN_CF)) return;
  await withMainCfLock(() => {
    const before = statSync(DEFAULT_MAIN_CF);
    const lines = readFileSync(DEFAULT_MAIN_CF, "utf8").split("\n");
    // The last definition wins in Postfix; continuation lines start with white space.
    let start = -1;
    lines.forEach((line, i) => {
      if (new RegExp(`^${PARAM}\\s*=`).test(line)) start = i;
    });
    let end = start + 1;
    while (start >= 0 && end < lines.length && /^[ \t]+\S/.test(lines[end] ?? "")) end++;
    const value = start < 0 ? "" : lines.slice(start, end).join(" ").replace(/^[^=]*=/, "");
    const current = value.split(/[\s,]+/).filter((d) => d !== "");
    const ours = join(tmpdir(), DIR_PREFIX);
    const wanted = change(current.filter((d) => !d.startsWith(ours) || existsSync(d)));
    if (wanted.join(" ") === current.join(" ")) return;

    const replacement = wanted.length === 0 ? [] : [`${PARAM} = ${wanted.join(", ")}`];
    if (start >= 0) lines.splice(start, end - start, ...replacement);
    else lines.splice(lines[lines.length - 1] === "" ? lines.length - 1 : lines.length, 0, ...replacement);
    // Write-then-rename: a Postfix program reading the file meanwhile sees old or new, never half.
    const temp = `${DEFAULT_MAIN_CF}.authmilter-e2e.${process.pid}`;
    writeFileSync(temp, lines.join("\n"), { mode: before.mode & 0o7777 });
    chownSync(temp, before.uid, before.gid);
    utimesSync(temp, before.atime, before.mtime);
    renameSync(temp, DEFAULT_MAIN_CF);
  });
}

// --- the instance ---------------------------------------------------------------------------

function readLog(dir: string): string {
  try {
    return readFileSync(join(dir, "maillog"), "utf8");
  } catch {
    return "";
  }
}

function tail(text: string, lines = 40): string {
  return text.split("\n").slice(-lines - 1).join("\n");
}

// A zombie (exited, not yet reaped by init) counts as gone: it holds no port and writes nothing.
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function masterPid(dir: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(join(dir, "queue", "pid", "master.pid"), "utf8").trim(), 10);
    return Number.isFinite(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What `postfix stop` does, minus its fixed one-second sleeps: SIGTERM to master, which passes it
 * on to its children, then wait. master runs in its own session (setsid), so its process group is
 * exactly this instance if anything has to be killed hard.
 */
async function stopInstance(dir: string): Promise<void> {
  const pid = masterPid(dir);
  if (pid === undefined || !isAlive(pid)) return;
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + 10_000;
  while (isAlive(pid) && Date.now() < deadline) await sleep(20);
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // the whole group is gone already: the normal case
  }
}

// --- queue layout -----------------------------------------------------------------------------
// What `post-install create-missing` would make (Debian's postfix-files, "d" entries). Doing it
// here takes milliseconds; the script takes ~2 s, mostly forking postconf once per parameter.

interface Ids {
  readonly mailOwner: number;
  readonly setgidGroup: number;
}
let ids: Promise<Ids> | undefined;

function postfixIds(): Promise<Ids> {
  ids ??= (async () => {
    const user = await run("id", ["-u", "postfix"]);
    const group = await run("getent", ["group", "postdrop"]);
    const mailOwner = Number.parseInt(user.stdout, 10);
    const setgidGroup = Number.parseInt(group.stdout.split(":")[2] ?? "", 10);
    if (!Number.isInteger(mailOwner) || !Number.isInteger(setgidGroup)) {
      throw new Error(`no postfix user or postdrop group (is Postfix installed?): ${user.stderr}${group.stderr}`);
    }
    return { mailOwner, setgidGroup };
  })();
  return ids;
}

async function createQueue(dir: string): Promise<void> {
  const { mailOwner, setgidGroup } = await postfixIds();
  const queue = join(dir, "queue");
  const make = (path: string, mode: number, uid: number, gid: number) => {
    mkdirSync(path);
    chownSync(path, uid, gid);
    chmodSync(path, mode); // after chown, and not via mkdir's mode: the umask would eat bits
  };
  make(queue, 0o755, 0, 0);
  make(join(dir, "data"), 0o700, mailOwner, 0);
  make(join(queue, "pid"), 0o755, 0, 0);
  for (const name of ["active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"]) {
    make(join(queue, name), 0o700, mailOwner, 0);
  }
  make(join(queue, "maildrop"), 0o730, mailOwner, setgidGroup);
  make(join(queue, "public"), 0o710, mailOwner, setgidGroup);
}

async function startOnce(options: PostfixOptions): Promise<PostfixInstance> {
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  // Postfix daemons run as user postfix and must traverse into the queue directory.
  chmodSync(dir, 0o755);
  const configDir = join(dir, "etc");
  mkdirSync(configDir);
  const sink = await startSmtpSink();
  let started = false;
  const cleanup = async () => {
    if (started) await stopInstance(dir);
    await sink.close();
    await editAlternateConfigDirs((dirs) => dirs.filter((d) => d !== configDir)).catch(() => undefined);
    if (process.env["AUTHMILTER_E2E_KEEP"] === "1") console.error(`kept Postfix instance dir ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  };
  try {
    await createQueue(dir);
    const smtpPort = await freePort();
    writeFileSync(join(configDir, "main.cf"), mainCf(dir, smtpPort, sink.port, options));
    writeFileSync(join(configDir, "master.cf"), masterCf(smtpPort));
    // master rereads a main.cf younger than a couple of seconds until it stops changing (it
    // might be half written): backdating saves that wait on every start.
    const past = new Date(Date.now() - 60_000);
    for (const file of ["main.cf", "master.cf"]) utimesSync(join(configDir, file), past, past);
    await editAlternateConfigDirs((dirs) => (dirs.includes(configDir) ? dirs : [...dirs, configDir]));

    // master -w is what `postfix start` ends with. Calling it directly skips postfix-script's
    // "starting" log line, whose postlog(1) waits up to seconds for a postlogd that only master
    // is about to start. -w returns once master has initialised (or failed to).
    const start = await run(MASTER, ["-c", configDir, "-w"], { timeoutMs: 30_000 });
    started = true;
    if (start.code !== 0) {
      throw new Error(`${MASTER} -c ${configDir} -w failed (${start.code}):\n${start.stderr}${start.stdout}\n${tail(readLog(dir))}`);
    }
    await waitForPort(smtpPort, 10_000, () => {
      const fatal = /^.*(fatal|bind .* failed|Address already in use).*$/m.exec(readLog(dir));
      return fatal === null ? undefined : `Postfix did not start listening on 127.0.0.1:${smtpPort}: ${fatal[0]}`;
    });

    let stopped = false;
    const waitForLog = (pattern: RegExp, timeoutMs = DEFAULT_WAIT_MS) => {
      const once = new RegExp(pattern.source, pattern.flags.replace("g", ""));
      return pollUntil(
        () => once.exec(readLog(dir)) ?? undefined,
        timeoutMs,
        () => `maillog never matched ${pattern}\n${tail(readLog(dir))}`,
      );
    };
    const diagnose = () => `maillog of ${dir}:\n${tail(readLog(dir))}`;

    return {
      dir,
      configDir,
      smtpPort,
      sinkPort: sink.port,
      swaks: (args) =>
        run(SWAKS, ["--server", "127.0.0.1", "--port", String(smtpPort), "--timeout", "20", ...args], { timeoutMs: 45_000 }),
      sendmail: (message, args = ["-i", "-t"]) =>
        run(SENDMAIL, ["-C", configDir, ...args], { input: message, timeoutMs: 30_000 }),
      delivered: () => sink.messages(),
      waitForDelivered: (count, timeoutMs = DEFAULT_WAIT_MS) => sink.waitForCount(count, timeoutMs, diagnose),
      waitForMessage: (match, timeoutMs = DEFAULT_WAIT_MS) =>
        pollUntil(
          () => sink.messages().find(match),
          timeoutMs,
          () => `no matching message among ${sink.messages().length} delivered\n${diagnose()}`,
        ),
      log: () => readLog(dir),
      waitForLog,
      queueIdOf: async (messageId, timeoutMs = DEFAULT_WAIT_MS) => {
        const escaped = messageId.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        const match = await waitForLog(new RegExp(`cleanup\\[\\d+\\]: ([0-9A-Za-z]+): message-id=${escaped}`), timeoutMs);
        return match[1]!;
      },
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await cleanup();
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/**
 * Starts a private Postfix. Retries with fresh ports when another process grabbed the SMTP port
 * between our probe and Postfix's bind (parallel test files make that possible, if rare).
 */
export async function startPostfix(options: PostfixOptions = {}): Promise<PostfixInstance> {
  if (process.getuid?.() !== 0) throw new Error("a private Postfix instance can only be started as root");
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(options);
    } catch (err) {
      lastError = err;
      if (!/Address already in use|bind/.test((err as Error).message)) throw err;
    }
  }
  throw lastError;
}

/**
 * Starts several instances at once. If one fails the others are stopped before the error is
 * thrown: a half-started set would otherwise outlive the test file (afterAll never sees it).
 */
export async function startPostfixes(list: readonly PostfixOptions[]): Promise<PostfixInstance[]> {
  const results = await Promise.allSettled(list.map((options) => startPostfix(options)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed === undefined) return results.map((r) => (r as PromiseFulfilledResult<PostfixInstance>).value);
  await Promise.all(results.map((r) => (r.status === "fulfilled" ? r.value.stop() : undefined)));
  throw failed.reason;
}

/** The queue id Postfix reported to swaks ("250 2.0.0 Ok: queued as 4ABC123"). */
export function queueIdFromSwaks(stdout: string): string | undefined {
  return /queued as ([0-9A-Za-z]+)/.exec(stdout)?.[1];
}
