import { pino, type Logger } from "pino";
import type { LogLevel } from "./config/schema.ts";

/** JSON lines on stdout: journald under systemd, a pipe in tests. */
export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
