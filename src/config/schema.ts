// Every option, its type, default and meaning, in one place. The loader validates against
// this; config/authmilter.example.yaml documents the same options for admins.

import { hostname } from "node:os";
import { parseSocketSpec } from "../milter/socket-spec.ts";

export const FAILURE_ACTIONS = ["tempfail", "accept", "reject"] as const;
export type FailureAction = (typeof FAILURE_ACTIONS)[number];

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  /** Names this host in headers (the authserv-id later); default: the system host name. */
  readonly hostname: string;
  readonly milter: {
    readonly socket: string;
    readonly socketUmask: number;
    readonly maxConnections: number;
    readonly idleTimeoutMs: number;
    readonly commandTimeoutMs: number;
    readonly progressIntervalMs: number;
    readonly maxPacketBytes: number;
    readonly drainTimeoutMs: number;
    readonly onInternalError: FailureAction;
  };
  readonly log: {
    readonly level: LogLevel;
  };
}

export type FieldType =
  | { readonly kind: "string"; readonly check?: (value: string) => void }
  | { readonly kind: "integer"; readonly min: number; readonly max: number }
  | { readonly kind: "duration"; readonly minMs: number; readonly maxMs: number }
  | { readonly kind: "octal" }
  | { readonly kind: "enum"; readonly values: readonly string[] };

/** The YAML key (as admins write it) → where it goes and how it is checked. */
export interface Field {
  readonly type: FieldType;
  /** Key in the Config object (durations become ...Ms). */
  readonly target: string;
  readonly doc: string;
}

export type Section = Readonly<Record<string, Field>>;

export const SCHEMA: Readonly<Record<string, Section | Field>> = {
  hostname: {
    type: { kind: "string" },
    target: "hostname",
    doc: "host name used in added headers; default: this machine's name",
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
    onInternalError: {
      type: { kind: "enum", values: FAILURE_ACTIONS },
      target: "onInternalError",
      doc: "what a message gets when authmilter fails on it",
    },
  },
  log: {
    level: { type: { kind: "enum", values: LOG_LEVELS }, target: "level", doc: "log verbosity" },
  },
};

export function defaultConfig(): Config {
  return {
    hostname: hostname(),
    milter: {
      socket: "inet:8891@127.0.0.1",
      socketUmask: 0o007,
      maxConnections: 2048,
      idleTimeoutMs: 15 * 60_000,
      commandTimeoutMs: 60_000,
      progressIntervalMs: 10_000,
      maxPacketBytes: 1024 * 1024,
      drainTimeoutMs: 60_000,
      onInternalError: "tempfail",
    },
    log: { level: "info" },
  };
}
