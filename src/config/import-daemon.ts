// How the daemon runs: opendkim's message limits to limits.*, its Nameservers and both
// programs' DNSTimeout to dns.*, and the milter Socket and UMask to milter.*.

import { parseServer } from "../dns/client.ts";
import { parseSocketSpec } from "../milter/socket-spec.ts";
import { parseConfInteger, where, type ConfEntry } from "./import-conf.ts";
import type { ImportContext } from "./import-context.ts";

export function mapLimits(ctx: ImportContext): void {
  const dkim = ctx.dkim;
  const max = ctx.take(dkim, "MaximumSignaturesToVerify");
  if (max) {
    const n = parseConfInteger(max.value) ?? 0;
    if (n >= 1 && n <= 100) ctx.set("limits.maxSignatures", n, ctx.source(max));
    else ctx.reject(max, "authmilter's limits.maxSignatures is 1..100");
  } else if (dkim) {
    ctx.note(undefined, "MaximumSignaturesToVerify was not set: opendkim verified 3 signatures per message; authmilter's default (limits.maxSignatures) is 5");
  }
  const hdr = ctx.take(dkim, "MaximumHeaders");
  if (hdr) {
    const n = parseConfInteger(hdr.value) ?? 0;
    if (n >= 1024 && n <= 1 << 30) ctx.set("limits.maxHeaderSize", n, ctx.source(hdr));
    else if (n === 0) ctx.reject(hdr, "0 (no limit) has no equivalent: authmilter always limits the header block (limits.maxHeaderSize, default 1 MiB)");
    else ctx.reject(hdr, `authmilter's limits.maxHeaderSize is 1024..${1 << 30}`);
  }
}

export function mapDns(ctx: ImportContext): void {
  const ns = ctx.take(ctx.dkim, "Nameservers");
  if (ns) {
    const servers: string[] = [];
    for (const s of ns.value.split(",").map((v) => v.trim()).filter((v) => v !== "")) {
      try {
        parseServer(s);
        servers.push(s);
      } catch (err) {
        ctx.note(where(ns), `Nameservers entry "${s}" left out: ${(err as Error).message}`);
      }
    }
    if (servers.length > 0) ctx.set("dns.servers", servers, ctx.source(ns));
  }
  const timeouts = [ctx.take(ctx.dkim, "DNSTimeout"), ctx.take(ctx.dmarc, "DNSTimeout")].filter((e): e is ConfEntry => e !== undefined);
  const t = timeouts[0];
  if (t) {
    const n = parseConfInteger(t.value) ?? 0;
    if (timeouts.length > 1 && parseConfInteger(timeouts[1]!.value) !== n) {
      ctx.note(where(timeouts[1]!), `DNSTimeout differs between the files; opendkim's (${t.value}) is used`);
    }
    if (n >= 1 && n <= 60) {
      ctx.set("dns.timeout", `${n}s`, `${timeouts.map((e) => ctx.source(e)).join("; ")}: per attempt in authmilter (dns.tries rounds over the servers)`);
    } else {
      for (const e of timeouts) ctx.reject(e, n === 0 ? "0 (wait forever) has no equivalent; authmilter's dns.timeout is at most 60s" : "authmilter's dns.timeout is 1..60 seconds");
    }
  }
}

export function mapMilter(ctx: ImportContext): void {
  const dkimSock = ctx.take(ctx.dkim, "Socket");
  const dmarcSock = ctx.take(ctx.dmarc, "Socket");
  const chosen = dkimSock ?? dmarcSock;
  if (chosen === undefined) {
    ctx.note(undefined, "no Socket was set: authmilter listens on its default, inet:8891@127.0.0.1 (Postfix: inet:127.0.0.1:8891)");
    return;
  }
  const conf = chosen.program === "opendkim" ? ctx.dkim! : ctx.dmarc!;
  try {
    parseSocketSpec(chosen.value);
  } catch (err) {
    ctx.reject(chosen, `authmilter cannot use it: ${(err as Error).message}`);
    return;
  }
  const chroot = chosen.value.startsWith("local:") || chosen.value.startsWith("unix:") || chosen.value.startsWith("/") ? " (relative to /var/spool/postfix when smtpd runs chrooted)" : "";
  ctx.set("milter.socket", chosen.value, `${ctx.source(chosen)}; in main.cf: ${postfixMilter(chosen.value)}${chroot}`);
  if (dkimSock && dmarcSock) {
    ctx.note(
      where(dmarcSock),
      `two sockets: opendkim's ${dkimSock.value} and opendmarc's ${dmarcSock.value}. authmilter replaces both with one, and keeps opendkim's because Postfix already ` +
        `sends mail to it. Remove ${postfixMilter(dmarcSock.value)} from smtpd_milters and non_smtpd_milters in main.cf`,
    );
  }
  const spec = parseSocketSpec(chosen.value);
  if (spec.kind === "unix" && !spec.path.startsWith("/run/authmilter/")) {
    ctx.note(
      where(chosen),
      `the socket ${spec.path} is outside /run/authmilter (the unit's RuntimeDirectory), so the authmilter user may not be able to create it. ` +
        "Either give it a directory it can write, or move to local:/run/authmilter/authmilter.sock and change main.cf to match",
    );
  }
  if (spec.kind === "tcp" && (spec.host === "0.0.0.0" || spec.host === "::")) {
    ctx.note(where(chosen), `${chosen.value} listens on every interface, as it did; unless Postfix runs on another host, restrict it to inet:${spec.port}@127.0.0.1`);
  }
  const umask = ctx.take(conf, "UMask");
  if (umask) {
    const n = parseConfInteger(umask.value) ?? 0;
    if (n >= 0 && n <= 0o7777) {
      ctx.set("milter.socketUmask", `0${n.toString(8).padStart(3, "0")}`.slice(-4), `${ctx.source(umask)}${/^0/.test(umask.value) ? "" : ` (read as the decimal number ${n}, as ${conf.program} does)`}`);
    } else ctx.reject(umask, "not a file mode mask");
  }
  const other = chosen.program === "opendkim" ? ctx.dmarc : ctx.dkim;
  const otherUmask = ctx.take(other, "UMask");
  if (otherUmask) ctx.reject(otherUmask, `it applied to ${otherUmask.program}'s socket, which authmilter's single socket replaces`);
}

/** The Postfix main.cf form of an opendkim socket spec. */
export function postfixMilter(spec: string): string {
  try {
    const s = parseSocketSpec(spec);
    if (s.kind === "unix") return `unix:${s.path}`;
    const host = s.host === "0.0.0.0" || s.host === "::" ? "localhost" : s.host;
    return host.includes(":") ? `inet:[${host}]:${s.port}` : `inet:${host}:${s.port}`;
  } catch {
    return spec;
  }
}
