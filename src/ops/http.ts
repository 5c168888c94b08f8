// The optional HTTP endpoint for monitoring: /metrics (Prometheus text format) and /healthz.

import http from "node:http";

export interface MonitoringServer {
  readonly address: string;
  close(): Promise<void>;
}

/** `listen` is "host:port" or "[v6]:port"; port 0 picks a free one. */
/** `render` produces the exposition text: one registry's, or the sum of a cluster's workers'. */
export async function startMonitoring(listen: string, render: () => Promise<string>, healthy: () => boolean): Promise<MonitoringServer> {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):([0-9]+)$/.exec(listen);
  if (!m) throw new Error(`metrics.listen ${JSON.stringify(listen)} is not host:port or [ipv6]:port`);
  const host = m[1] ?? m[2]!;
  const server = http.createServer((req, res) => {
    if (req.method !== "GET") {
      res.writeHead(405, { allow: "GET" }).end();
    } else if (req.url === "/metrics") {
      render().then(
        (text) => res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(text),
        () => res.writeHead(500).end(),
      );
    } else if (req.url === "/healthz") {
      const ok = healthy();
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok\n" : "not serving\n");
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(m[3]), host, resolve);
  });
  const bound = server.address();
  const port = typeof bound === "object" && bound ? bound.port : Number(m[3]);
  return {
    address: host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
