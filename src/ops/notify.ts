// systemd readiness (Type=notify). The notification socket is a unix datagram socket, which
// Node cannot send on, so systemd-notify(1) sends it, naming our PID (NotifyAccess=all in the
// unit lets systemd accept a message from that helper).

import { spawn } from "node:child_process";

/** Tells systemd we are ready (or stopping), when started by systemd with Type=notify. */
export function notifySystemd(state: "ready" | "stopping", status: string): void {
  if (!process.env["NOTIFY_SOCKET"]) return;
  const child = spawn("systemd-notify", [`--pid=${process.pid}`, `--status=${status}`, state === "ready" ? "--ready" : "STOPPING=1"], {
    stdio: "ignore",
  });
  child.on("error", (err) => process.stderr.write(`authmilter: systemd-notify failed: ${err.message}\n`));
  child.unref();
}
