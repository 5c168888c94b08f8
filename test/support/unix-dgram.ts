// A unix datagram socket receiver, standing in for syslogd's /dev/log or systemd's
// NOTIFY_SOCKET. Node cannot bind one, so a few lines of Python do, appending each datagram
// (and a separator line) to a file the test reads.

import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";

export interface DatagramReceiver {
  /** Every datagram so far, in order. */
  datagrams(): string[];
  stop(): void;
}

const SEPARATOR = "\n\u241e\n";

export async function receiveDatagrams(socketPath: string, outPath: string): Promise<DatagramReceiver> {
  const child = spawn("python3", [
    "-c",
    "import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nf=open(sys.argv[2],'ab',0)\nwhile True:\n  f.write(s.recv(65536)+sys.argv[3].encode())",
    socketPath,
    outPath,
    SEPARATOR,
  ]);
  for (let i = 0; i < 200 && !existsSync(socketPath); i++) await new Promise((r) => setTimeout(r, 20));
  if (!existsSync(socketPath)) {
    child.kill();
    throw new Error(`the datagram receiver did not bind ${socketPath}`);
  }
  return {
    datagrams: () => (existsSync(outPath) ? readFileSync(outPath, "utf8").split(SEPARATOR).slice(0, -1) : []),
    stop: () => void child.kill(),
  };
}
