// Every option, its type, default and meaning, in one place. The loader validates against
// this; config/authmilter.example.yaml documents the same options for admins.

import { isIP } from "node:net";
import { hostname } from "node:os";
import { parseServer } from "../dns/client.ts";
import { hostListFromValues } from "../keys/hosts.ts";
import { FACILITIES, type Facility } from "../ops/syslog.ts";
import { parseSocketSpec } from "../milter/socket-spec.ts";

/** RFC 8601 authserv-id is a value: a token or quoted string; we allow what needs no quoting. */
function checkAuthservId(value: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value)) {
    throw new Error(`${JSON.stringify(value)} is not a valid authserv-id (letters, digits, ".", "-", "_")`);
  }
}

/** A host entry, or a host-list file ("file:/path", "/path") that is read when the config is built. */
function checkHostEntry(value: string, setting: string): void {
  if (value.startsWith("file:/") || value.startsWith("/")) return;
  hostListFromValues([value], setting);
}

function checkAddress(value: string): void {
  if (!/^[^\s@<>"]+@[A-Za-z0-9.-]+$/.test(value)) throw new Error(`${JSON.stringify(value)} is not a plain address like postmaster@example.org`);
}

function checkHostPort(value: string): void {
  if (!/^(?:\[[0-9A-Fa-f:.]+\]|[^:\s]+):[0-9]{1,5}$/.test(value)) throw new Error(`${JSON.stringify(value)} is not host:port or [ipv6]:port`);
}

function fail(message: string): never {
  throw new Error(message);
}

function checkDomainPattern(value: string): void {
  const bare = value === "*" ? "example" : value.replace(/^\*\./, "");
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/.test(bare)) {
    throw new Error(`${JSON.stringify(value)} is not a domain, "*.domain" or "*"`);
  }
}

function checkSelector(value: string): void {
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)*$/.test(value)) {
    throw new Error(`${JSON.stringify(value)} is not a DKIM selector (letters, digits, "-", "_", dots between labels)`);
  }
}

function checkDnsServer(value: string): void {
  parseServer(value);
}

export const FAILURE_ACTIONS = ["tempfail", "accept", "reject"] as const;
export type FailureAction = (typeof FAILURE_ACTIONS)[number];
export const ACTIONS = ["accept", "tempfail", "reject", "quarantine"] as const;
export type ActionName = (typeof ACTIONS)[number];

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const MODES = ["sign", "verify", "sign+verify"] as const;
export type Mode = (typeof MODES)[number];
export const CANONICALIZATIONS = ["relaxed/relaxed", "relaxed/simple", "simple/simple", "simple/relaxed"] as const;
export const AUTHOR_SOURCES = ["from", "sender", "mailfrom"] as const;

/** One native signing entry: mail whose author domain matches `domain` is signed with this key. */
export interface SigningKeyEntry {
  /** "example.com", "*.example.com" (its subdomains) or "*" (any domain). */
  readonly domain: string;
  /** d=; default: `domain` itself, or the part after "*." for a subdomain pattern. */
  readonly signingDomain?: string;
  readonly selector: string;
  readonly keyFile: string;
}

export interface Config {
  /** sign, verify, or both (opendkim's Mode sv). */
  readonly mode: Mode;
  /** Names this host in the software header; default: the system host name. */
  readonly hostname: string;
  /** The authserv-id of our Authentication-Results headers (RFC 8601); default: hostname. */
  readonly authservId: string;
  /** Clients whose mail is ours (opendkim's InternalHosts): not verified, signed later. */
  readonly internalHosts: readonly string[];
  /** opendkim's ExternalIgnoreList: external hosts allowed to send as our domains without a warning. */
  readonly externalIgnoreList: readonly string[];
  readonly signing: {
    readonly keys: readonly SigningKeyEntry[];
    /** opendkim KeyTable file, read as it is. */
    readonly keyTable?: string;
    /** opendkim SigningTable: "/path" (exact entries) or "refile:/path" (wildcards). */
    readonly signingTable?: string;
    /** opendkim's MultipleSignatures: every SigningTable match signs, not only the first. */
    readonly multipleSignatures: boolean;
    readonly requireSafeKeys: boolean;
    readonly minimumKeyBits: number;
    /** Which identity picks the signing domain (opendkim's SenderHeaders, roughly). */
    readonly author: (typeof AUTHOR_SOURCES)[number];
    /** {daemon_name} values whose mail is ours (opendkim's MTA option), e.g. ORIGINATING. */
    readonly submissionDaemons: readonly string[];
    /** Header fields signed when present; empty: the built-in list. */
    readonly headers: readonly string[];
    /** Header fields over-signed; empty list turns over-signing off; absent: the built-in list. */
    readonly oversign?: readonly string[];
    readonly canonicalization: (typeof CANONICALIZATIONS)[number];
    /** x= this long after t=; 0: no expiry. */
    readonly expireMs: number;
  };
  readonly verify: {
    readonly softwareHeader: boolean;
    /** opendmarc's SPFSelfValidate: run SPF ourselves rather than trust an upstream A-R. */
    readonly spfSelfValidate: boolean;
    /** opendmarc's TrustedAuthservIDs: A-R headers from these are kept and may feed DMARC. */
    readonly trustedAuthservIds: readonly string[];
    /** opendmarc's SPFIgnoreResults: never take SPF from a trusted A-R header. */
    readonly spfIgnoreResults: boolean;
    /** opendmarc's IgnoreAuthenticatedClients: SASL-authenticated mail is not verified. */
    readonly ignoreAuthenticatedClients: boolean;
  };
  readonly policy: {
    /** opendmarc's RequiredHeaders: RFC 5322 §3.6 field counts, else 550 5.7.1. */
    readonly requiredHeaders: boolean;
    readonly dmarc: {
      readonly enforce: boolean;
      readonly quarantine: "hold" | "mark";
      readonly ignoreDomains: readonly string[];
      readonly ignoreHosts: readonly string[];
    };
  };
  /** opendkim's On-* settings: what a message gets in each kind of trouble. */
  readonly actions: {
    readonly dnsError: ActionName;
    readonly internalError: FailureAction;
    readonly badSignature: ActionName;
    readonly noSignature: ActionName;
    readonly securityConcern: ActionName;
  };
  readonly limits: {
    readonly maxSignatures: number;
    readonly maxMessageBytes: number;
    readonly maxHeaders: number;
    readonly maxHeaderBytes: number;
    readonly messageTimeoutMs: number;
  };
  readonly dns: {
    /** "ip", "ip:port" or "[ipv6]:port"; empty: the system's (/etc/resolv.conf). */
    readonly servers: readonly string[];
    readonly timeoutMs: number;
    readonly tries: number;
    readonly cacheEntries: number;
  };
  readonly milter: {
    readonly socket: string;
    readonly socketUmask: number;
    readonly maxConnections: number;
    readonly idleTimeoutMs: number;
    readonly commandTimeoutMs: number;
    readonly progressIntervalMs: number;
    readonly maxPacketBytes: number;
    readonly drainTimeoutMs: number;
    /** Serving processes sharing the socket; 0: one per CPU core. */
    readonly workers: number;
  };
  readonly log: {
    readonly level: LogLevel;
    /** /dev/log (or another unix socket path) or udp://host:port; absent: no syslog. */
    readonly syslog?: string;
    readonly facility: Facility;
    /** JSON lines on standard output too (when syslog is on). */
    readonly stdout: boolean;
    /** opendkim's SyslogSuccess: log successful verifications and signatures at info. */
    readonly success: boolean;
    /** opendkim's LogWhy: say at info why a message was not signed or verified. */
    readonly why: boolean;
  };
  readonly metrics: {
    /** host:port for /metrics and /healthz; absent: no endpoint. */
    readonly listen?: string;
  };
  readonly check: {
    /** Addresses our mail leaves from: `authmilter check` verifies each domain's SPF allows them. */
    readonly outboundIps: readonly string[];
  };
  readonly reports: {
    /** The DMARC history (one row per verified message): a SQLite file or a postgres:// URL; absent: none kept. */
    readonly history?: string;
    /** Rows older than this are pruned (daily). */
    readonly retentionMs: number;
    /** Envelope sender and From: of every report; default postmaster@<hostname>. */
    readonly from?: string;
    /** The relay reports go through, host:port. */
    readonly smtp: string;
    /** A sendmail command used instead of `smtp`, split at spaces. */
    readonly sendmail?: string;
    readonly failure: {
      /** DMARC failure reports to ruf= (fo= honoured). */
      readonly dmarc: boolean;
      /** DKIM failure reports to r=y signers (RFC 6651). */
      readonly dkim: boolean;
      readonly perDomainPerHour: number;
    };
    readonly aggregate: {
      readonly orgName?: string;
      readonly orgEmail?: string;
      readonly receiver?: string;
    };
  };
}

export type FieldType =
  | { readonly kind: "string"; readonly check?: (value: string) => void }
  | { readonly kind: "integer"; readonly min: number; readonly max: number }
  | { readonly kind: "duration"; readonly minMs: number; readonly maxMs: number }
  | { readonly kind: "octal" }
  | { readonly kind: "boolean" }
  | { readonly kind: "list"; readonly check?: (value: string) => void }
  /** A list of mappings, each checked against `item`; `required` keys must be present. */
  | { readonly kind: "entries"; readonly item: Section; readonly required: readonly string[] }
  | { readonly kind: "enum"; readonly values: readonly string[] };

/** The YAML key (as admins write it) → where it goes and how it is checked. */
export interface Field {
  readonly type: FieldType;
  /** Key in the Config object (durations become ...Ms). */
  readonly target: string;
  readonly doc: string;
}

export interface Section {
  readonly [key: string]: Section | Field;
}

export const SCHEMA: Section = {
  hostname: {
    type: { kind: "string" },
    target: "hostname",
    doc: "host name used in added headers; default: this machine's name",
  },
  authservId: {
    type: { kind: "string", check: checkAuthservId },
    target: "authservId",
    doc: "authserv-id of our Authentication-Results; default: hostname",
  },
  internalHosts: {
    type: { kind: "list", check: (v) => checkHostEntry(v, "internalHosts") },
    target: "internalHosts",
    doc: "IPs, CIDRs and host names whose mail is ours (opendkim InternalHosts)",
  },
  mode: { type: { kind: "enum", values: MODES }, target: "mode", doc: "sign, verify or sign+verify" },
  externalIgnoreList: {
    type: { kind: "list", check: (v) => checkHostEntry(v, "externalIgnoreList") },
    target: "externalIgnoreList",
    doc: "external hosts that may send as our domains without a log warning",
  },
  signing: {
    keys: {
      type: {
        kind: "entries",
        required: ["domain", "selector", "keyFile"],
        item: {
          domain: { type: { kind: "string", check: checkDomainPattern }, target: "domain", doc: "author domain pattern" },
          signingDomain: { type: { kind: "string", check: checkDomainPattern }, target: "signingDomain", doc: "d= domain" },
          selector: { type: { kind: "string", check: checkSelector }, target: "selector", doc: "s= selector" },
          keyFile: { type: { kind: "string" }, target: "keyFile", doc: "private key file" },
        },
      },
      target: "keys",
      doc: "native signing entries",
    },
    keyTable: { type: { kind: "string" }, target: "keyTable", doc: "opendkim KeyTable file" },
    signingTable: { type: { kind: "string" }, target: "signingTable", doc: "opendkim SigningTable (refile: for wildcards)" },
    multipleSignatures: { type: { kind: "boolean" }, target: "multipleSignatures", doc: "sign with every SigningTable match" },
    requireSafeKeys: { type: { kind: "boolean" }, target: "requireSafeKeys", doc: "refuse keys others can read" },
    minimumKeyBits: { type: { kind: "integer", min: 0, max: 16384 }, target: "minimumKeyBits", doc: "smallest RSA key" },
    author: { type: { kind: "enum", values: AUTHOR_SOURCES }, target: "author", doc: "identity whose domain picks the key" },
    submissionDaemons: { type: { kind: "list" }, target: "submissionDaemons", doc: "{daemon_name} values that mean 'ours'" },
    headers: { type: { kind: "list" }, target: "headers", doc: "header fields to sign" },
    oversign: { type: { kind: "list" }, target: "oversign", doc: "header fields to over-sign" },
    canonicalization: { type: { kind: "enum", values: CANONICALIZATIONS }, target: "canonicalization", doc: "c=" },
    expire: { type: { kind: "duration", minMs: 0, maxMs: 366 * 86_400_000 }, target: "expireMs", doc: "x= after t=" },
  },
  verify: {
    softwareHeader: { type: { kind: "boolean" }, target: "softwareHeader", doc: "add the Authmilter-Filter header" },
    spfSelfValidate: { type: { kind: "boolean" }, target: "spfSelfValidate", doc: "check SPF ourselves" },
    trustedAuthservIds: { type: { kind: "list", check: checkAuthservId }, target: "trustedAuthservIds", doc: "upstream authserv-ids whose results are kept" },
    spfIgnoreResults: { type: { kind: "boolean" }, target: "spfIgnoreResults", doc: "ignore SPF results of trusted headers" },
    ignoreAuthenticatedClients: { type: { kind: "boolean" }, target: "ignoreAuthenticatedClients", doc: "do not verify SASL-authenticated mail" },
  },
  policy: {
    requiredHeaders: { type: { kind: "boolean" }, target: "requiredHeaders", doc: "RFC 5322 field checks" },
    dmarc: {
      enforce: { type: { kind: "boolean" }, target: "enforce", doc: "act on DMARC failures" },
      quarantine: { type: { kind: "enum", values: ["hold", "mark"] }, target: "quarantine", doc: "hold or only mark" },
      ignoreDomains: { type: { kind: "list" }, target: "ignoreDomains", doc: "author domains never enforced" },
      ignoreHosts: {
        type: { kind: "list", check: (v) => checkHostEntry(v, "policy.dmarc.ignoreHosts") },
        target: "ignoreHosts",
        doc: "clients never enforced",
      },
    },
  },
  actions: {
    dnsError: { type: { kind: "enum", values: ACTIONS }, target: "dnsError", doc: "a DNS lookup the verdict needs failed" },
    internalError: { type: { kind: "enum", values: FAILURE_ACTIONS }, target: "internalError", doc: "authmilter failed on the message" },
    badSignature: { type: { kind: "enum", values: ACTIONS }, target: "badSignature", doc: "DKIM signatures failed, none passed" },
    noSignature: { type: { kind: "enum", values: ACTIONS }, target: "noSignature", doc: "no DKIM signature" },
    securityConcern: { type: { kind: "enum", values: ACTIONS }, target: "securityConcern", doc: "the message broke a limit" },
  },
  limits: {
    maxSignatures: { type: { kind: "integer", min: 1, max: 100 }, target: "maxSignatures", doc: "DKIM signatures verified per message" },
    maxMessageSize: { type: { kind: "integer", min: 1024, max: 2 ** 40 }, target: "maxMessageBytes", doc: "bytes of body examined" },
    maxHeaders: { type: { kind: "integer", min: 10, max: 1_000_000 }, target: "maxHeaders", doc: "header fields per message" },
    maxHeaderSize: { type: { kind: "integer", min: 1024, max: 1 << 30 }, target: "maxHeaderBytes", doc: "bytes of header block" },
    messageTimeout: { type: { kind: "duration", minMs: 100, maxMs: 3_600_000 }, target: "messageTimeoutMs", doc: "verification deadline" },
  },
  dns: {
    servers: { type: { kind: "list", check: checkDnsServer }, target: "servers", doc: "DNS servers: ip, ip:port, [ipv6]:port" },
    timeout: { type: { kind: "duration", minMs: 100, maxMs: 60_000 }, target: "timeoutMs", doc: "per DNS query attempt" },
    tries: { type: { kind: "integer", min: 1, max: 10 }, target: "tries", doc: "rounds over the DNS servers" },
    cacheEntries: { type: { kind: "integer", min: 0, max: 10_000_000 }, target: "cacheEntries", doc: "DNS answers cached (0: no cache)" },
  },
  milter: {
    socket: {
      type: { kind: "string", check: (v) => void parseSocketSpec(v) },
      target: "socket",
      doc: "where Postfix connects: inet:PORT@HOST, inet6:PORT@[ADDR] or local:/path",
    },
    socketUmask: { type: { kind: "octal" }, target: "socketUmask", doc: "umask for a local socket, e.g. \"0007\"" },
    maxConnections: {
      type: { kind: "integer", min: 1, max: 1_000_000 },
      target: "maxConnections",
      doc: "milter connections served at once; more are refused",
    },
    idleTimeout: {
      type: { kind: "duration", minMs: 1_000, maxMs: 86_400_000 },
      target: "idleTimeoutMs",
      doc: "close a connection with no traffic for this long",
    },
    commandTimeout: {
      type: { kind: "duration", minMs: 100, maxMs: 3_600_000 },
      target: "commandTimeoutMs",
      doc: "longest our work on one milter event may take",
    },
    progressInterval: {
      type: { kind: "duration", minMs: 100, maxMs: 60_000 },
      target: "progressIntervalMs",
      doc: "while a message's result is pending, tell Postfix we are alive this often",
    },
    maxPacketSize: {
      type: { kind: "integer", min: 65_536, max: 64 * 1024 * 1024 },
      target: "maxPacketBytes",
      doc: "largest milter packet accepted, in bytes",
    },
    drainTimeout: {
      type: { kind: "duration", minMs: 0, maxMs: 3_600_000 },
      target: "drainTimeoutMs",
      doc: "on SIGTERM, how long messages in flight may take to finish",
    },
    workers: { type: { kind: "integer", min: 0, max: 256 }, target: "workers", doc: "serving processes; 0: one per core" },
  },
  log: {
    level: { type: { kind: "enum", values: LOG_LEVELS }, target: "level", doc: "log verbosity" },
    syslog: {
      type: {
        kind: "string",
        check: (v) => {
          if (!v.startsWith("/") && !/^udp:\/\/(?:\[[0-9A-Fa-f:.]+\]|[^:/\s]+):[0-9]{1,5}$/.test(v)) {
            throw new Error(`${JSON.stringify(v)} is neither a socket path (/dev/log) nor udp://host:port`);
          }
        },
      },
      target: "syslog",
      doc: "syslog target",
    },
    facility: { type: { kind: "enum", values: FACILITIES }, target: "facility", doc: "syslog facility" },
    stdout: { type: { kind: "boolean" }, target: "stdout", doc: "JSON on stdout as well" },
    success: { type: { kind: "boolean" }, target: "success", doc: "log successes at info" },
    why: { type: { kind: "boolean" }, target: "why", doc: "log why mail is not signed/verified" },
  },
  check: {
    outboundIps: {
      type: {
        kind: "list",
        check: (v) => {
          if (isIP(v) === 0) throw new Error(`${JSON.stringify(v)} is not an IP address`);
        },
      },
      target: "outboundIps",
      doc: "our outbound addresses, for authmilter check",
    },
  },
  reports: {
    history: {
      type: {
        kind: "string",
        check: (v) => void (v.startsWith("/") || /^postgres(?:ql)?:\/\//i.test(v) || fail(`${JSON.stringify(v)} is neither an absolute path (SQLite) nor a postgres:// URL`)),
      },
      target: "history",
      doc: "history store: SQLite file or PostgreSQL URL",
    },
    retention: { type: { kind: "duration", minMs: 3_600_000, maxMs: 3650 * 86_400_000 }, target: "retentionMs", doc: "history kept this long" },
    from: { type: { kind: "string", check: checkAddress }, target: "from", doc: "sender of reports" },
    smtp: { type: { kind: "string", check: checkHostPort }, target: "smtp", doc: "relay for reports" },
    sendmail: { type: { kind: "string" }, target: "sendmail", doc: "sendmail command for reports" },
    failure: {
      dmarc: { type: { kind: "boolean" }, target: "dmarc", doc: "DMARC failure reports" },
      dkim: { type: { kind: "boolean" }, target: "dkim", doc: "DKIM failure reports" },
      perDomainPerHour: { type: { kind: "integer", min: 1, max: 10_000 }, target: "perDomainPerHour", doc: "failure report rate" },
    },
    aggregate: {
      orgName: { type: { kind: "string" }, target: "orgName", doc: "report_metadata org_name" },
      orgEmail: { type: { kind: "string", check: checkAddress }, target: "orgEmail", doc: "report_metadata email" },
      receiver: { type: { kind: "string", check: checkDomainPattern }, target: "receiver", doc: "receiver domain in file names" },
    },
  },
  metrics: {
    listen: {
      type: { kind: "string", check: checkHostPort },
      target: "listen",
      doc: "Prometheus endpoint",
    },
  },
};

export function defaultConfig(): Config {
  const host = hostname();
  return {
    mode: "sign+verify",
    hostname: host,
    authservId: host,
    externalIgnoreList: [],
    signing: {
      keys: [],
      multipleSignatures: false,
      requireSafeKeys: true,
      minimumKeyBits: 1024,
      author: "from",
      submissionDaemons: [],
      headers: [],
      canonicalization: "relaxed/relaxed",
      expireMs: 0,
    },
    internalHosts: ["127.0.0.1", "::1"],
    verify: {
      softwareHeader: true,
      spfSelfValidate: true,
      trustedAuthservIds: [],
      spfIgnoreResults: false,
      ignoreAuthenticatedClients: true,
    },
    policy: {
      requiredHeaders: true,
      dmarc: { enforce: false, quarantine: "hold", ignoreDomains: [], ignoreHosts: [] },
    },
    actions: { dnsError: "tempfail", internalError: "tempfail", badSignature: "accept", noSignature: "accept", securityConcern: "tempfail" },
    limits: { maxSignatures: 5, maxMessageBytes: 64 * 1024 * 1024, maxHeaders: 1000, maxHeaderBytes: 1024 * 1024, messageTimeoutMs: 45_000 },
    dns: { servers: [], timeoutMs: 2_000, tries: 2, cacheEntries: 10_000 },
    milter: {
      socket: "inet:8891@127.0.0.1",
      socketUmask: 0o007,
      maxConnections: 2048,
      idleTimeoutMs: 15 * 60_000,
      commandTimeoutMs: 60_000,
      progressIntervalMs: 10_000,
      maxPacketBytes: 1024 * 1024,
      drainTimeoutMs: 60_000,
      workers: 0,
    },
    log: { level: "info", facility: "mail", stdout: true, success: true, why: true },
    metrics: {},
    check: { outboundIps: [] },
    reports: { retentionMs: 180 * 86_400_000, smtp: "127.0.0.1:25", failure: { dmarc: false, dkim: false, perDomainPerHour: 10 }, aggregate: {} },
  };
}
