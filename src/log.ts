import { pino, type Logger } from "pino";
import type { Config } from "./config/schema.ts";
import { syslogStream } from "./ops/syslog.ts";

/**
 * JSON lines on stdout (journald under systemd, a pipe in tests), and with `log.syslog` the
 * same messages as classic syslog lines. `log.stdout: false` leaves only syslog.
 */
export function createLogger(log: Config["log"]): Logger {
  const options = { level: log.level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (!log.syslog) return pino(options);
  const streams: pino.StreamEntry[] = [{ level: log.level, stream: syslogStream({ target: log.syslog, facility: log.facility }) }];
  if (log.stdout) streams.push({ level: log.level, stream: pino.destination(1) });
  return pino(options, pino.multistream(streams));
}
