// Whose mail is this? Ours (internal host, SASL login, submission service, local sendmail) or
// from outside — the answer decides between signing and verifying, as opendkim's InternalHosts,
// MTA and SASL handling do.

import { matchesHost, type HostList } from "../keys/hosts.ts";

export type ClientClass =
  | { readonly kind: "internal"; readonly why: string }
  | { readonly kind: "authenticated"; readonly user: string }
  | { readonly kind: "external" };

export interface ClientFacts {
  readonly address: string;
  /** Postfix's name for the client: a verified name, "[addr]" or "unknown". */
  readonly hostname: string;
  readonly port: number;
  /** The {auth_authen} macro: present only after a successful SASL login. */
  readonly authUser?: string;
  /** The {daemon_name} macro as smtpd sent it at CONNECT (cleanup sends another later, §13.2). */
  readonly daemonName?: string;
}

export interface ClassifyPolicy {
  readonly internalHosts: HostList;
  readonly submissionDaemons: readonly string[];
}

const LOOPBACK = new Set(["127.0.0.1", "::1"]);

/**
 * Postfix's non-SMTP path (sendmail, pickup) fakes a CONNECT from "localhost", a loopback
 * address and port 0; smtpd always has a port (an XCLIENT without PORT aside, which also
 * names a client other than "localhost").
 */
export function isNonSmtp(facts: ClientFacts): boolean {
  return facts.port === 0 && facts.hostname === "localhost" && LOOPBACK.has(facts.address);
}

export function classifyClient(facts: ClientFacts, policy: ClassifyPolicy): ClientClass {
  if (facts.authUser) return { kind: "authenticated", user: facts.authUser };
  if (isNonSmtp(facts)) return { kind: "internal", why: "submitted locally (non-SMTP)" };
  if (facts.daemonName !== undefined && policy.submissionDaemons.includes(facts.daemonName)) {
    return { kind: "internal", why: `came in through ${facts.daemonName}` };
  }
  const hostname = facts.hostname.startsWith("[") || facts.hostname === "unknown" ? undefined : facts.hostname;
  if (matchesHost(policy.internalHosts, facts.address || undefined, hostname)) {
    return { kind: "internal", why: `${facts.hostname} [${facts.address}] is in internalHosts` };
  }
  return { kind: "external" };
}
