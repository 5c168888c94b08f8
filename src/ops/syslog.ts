// Classic syslog output for admins whose greps and fail2ban filters read
// "authmilter[1234]: 4ABC123: DKIM verification successful" from /var/log/mail.log.
//
// Node cannot send on a unix datagram socket (/dev/log is one) without a native addon, so
// lines go through util-linux's logger(1), started once: it reads "<PRI>message" lines
// (--prio-prefix) and sends each with our name and PID. UDP targets are sent by us directly.

import { spawn, type ChildProcess } from "node:child_process";
import dgram from "node:dgram";
import { hostname } from "node:os";
import { Writable } from "node:stream";

export const FACILITIES = ["mail", "daemon", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"] as const;
export type Facility = (typeof FACILITIES)[number];
const FACILITY_CODE: Record<Facility, number> = { mail: 2, daemon: 3, local0: 16, local1: 17, local2: 18, local3: 19, local4: 20, local5: 21, local6: 22, local7: 23 };

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** pino level → syslog severity. */
function severity(level: number): number {
  if (level >= 60) return 2; // crit
  if (level >= 50) return 3; // err
  if (level >= 40) return 4; // warning
  if (level >= 30) return 6; // info
  return 7; // debug
}

export interface SyslogTarget {
  /** A unix socket path (/dev/log) or udp://host:port. */
  readonly target: string;
  readonly facility: Facility;
  readonly tag?: string;
}

/** A stream for pino: each JSON line becomes one syslog message "<msg>". */
export function syslogStream(options: SyslogTarget): Writable & { close(): void } {
  const tag = options.tag ?? "authmilter";
  const facility = FACILITY_CODE[options.facility];
  const udp = /^udp:\/\/(?:\[([^\]]+)\]|([^:/]+)):([0-9]+)$/.exec(options.target);
  let send: (pri: number, msg: string) => void;
  let close: () => void;
  if (udp) {
    const host = udp[1] ?? udp[2]!;
    const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    socket.unref();
    const me = hostname();
    send = (pri, msg) => {
      // RFC 3164: <PRI>Mmm dd hh:mm:ss host tag[pid]: msg
      const now = new Date();
      const stamp = `${MONTHS[now.getMonth()]} ${String(now.getDate()).padStart(2, " ")} ${now.toTimeString().slice(0, 8)}`;
      socket.send(Buffer.from(`<${pri}>${stamp} ${me} ${tag}[${process.pid}]: ${msg}`), Number(udp[3]), host);
    };
    close = () => socket.close();
  } else {
    const child: ChildProcess = spawn("logger", ["--socket-errors=off", "-u", options.target, "--prio-prefix", `--id=${process.pid}`, "-t", tag], {
      stdio: ["pipe", "ignore", "inherit"],
    });
    child.unref();
    child.on("error", (err) => process.stderr.write(`authmilter: syslog via logger(1) failed: ${err.message}\n`));
    send = (pri, msg) => void child.stdin?.write(`<${pri}>${msg}\n`);
    close = () => child.stdin?.end();
  }
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (!line) continue;
        try {
          const entry = JSON.parse(line) as { level?: number; msg?: string };
          if (typeof entry.msg !== "string") continue;
          // One physical line per message: a newline would start a forged one.
          send(facility * 8 + severity(entry.level ?? 30), entry.msg.replace(/[\r\n]+/g, " "));
        } catch {
          // not a log line
        }
      }
      done();
    },
  });
  return Object.assign(stream, { close });
}
