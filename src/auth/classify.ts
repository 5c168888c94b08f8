// Whose mail is this? Internal (our own hosts), authenticated (SASL), or external — the
// answer decides between signing and verifying, as opendkim's InternalHosts does.

import { matchesHost, type HostList } from "../keys/hosts.ts";

export type ClientClass =
  | { readonly kind: "internal"; readonly why: string }
  | { readonly kind: "authenticated"; readonly user: string }
  | { readonly kind: "external" };

export interface ClientFacts {
  readonly address: string;
  /** Postfix's name for the client: a verified name, "[addr]" or "unknown". */
  readonly hostname: string;
  /** The {auth_authen} macro: present only after a successful SASL login. */
  readonly authUser?: string;
}

export interface ClassifyPolicy {
  readonly internalHosts: HostList;
}

export function classifyClient(facts: ClientFacts, policy: ClassifyPolicy): ClientClass {
  if (facts.authUser) return { kind: "authenticated", user: facts.authUser };
  const hostname = facts.hostname.startsWith("[") || facts.hostname === "unknown" ? undefined : facts.hostname;
  if (matchesHost(policy.internalHosts, facts.address || undefined, hostname)) {
    return { kind: "internal", why: `${facts.hostname} [${facts.address}] is in internalHosts` };
  }
  return { kind: "external" };
}
