// Socket specifications as opendkim and opendmarc write them, so a migrating admin's
// `Socket inet:8891@localhost` means the same here.

export type SocketSpec =
  | { readonly kind: "tcp"; readonly host: string; readonly port: number }
  | { readonly kind: "unix"; readonly path: string };

export class SocketSpecError extends Error {
  override readonly name = "SocketSpecError";
}

const FORMS = "inet:PORT@HOST, inet6:PORT@[ADDR], local:/path/to.sock or unix:/path/to.sock";

export function parseSocketSpec(spec: string): SocketSpec {
  const colon = spec.indexOf(":");
  const scheme = colon === -1 ? "" : spec.slice(0, colon).toLowerCase();
  const rest = spec.slice(colon + 1);
  if (spec.startsWith("/")) return { kind: "unix", path: spec };
  if (scheme === "local" || scheme === "unix") {
    if (!rest.startsWith("/")) throw new SocketSpecError(`socket ${JSON.stringify(spec)}: the path must be absolute`);
    return { kind: "unix", path: rest };
  }
  if (scheme === "inet" || scheme === "inet6") {
    const at = rest.indexOf("@");
    const portText = at === -1 ? rest : rest.slice(0, at);
    let host = at === -1 ? (scheme === "inet6" ? "::" : "0.0.0.0") : rest.slice(at + 1);
    if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
    const port = Number(portText);
    if (!/^[0-9]+$/.test(portText) || port > 65535) {
      throw new SocketSpecError(`socket ${JSON.stringify(spec)}: port ${JSON.stringify(portText)} is not a number 0-65535`);
    }
    if (host === "") throw new SocketSpecError(`socket ${JSON.stringify(spec)}: empty host after "@"`);
    return { kind: "tcp", host, port };
  }
  throw new SocketSpecError(`socket ${JSON.stringify(spec)} is not one of ${FORMS}`);
}

export function formatSocketSpec(spec: SocketSpec): string {
  if (spec.kind === "unix") return `local:${spec.path}`;
  return spec.host.includes(":") ? `inet6:${spec.port}@[${spec.host}]` : `inet:${spec.port}@${spec.host}`;
}
