// opendmarc's RequiredHeaders: the RFC 5322 §3.6 field counts a message must meet before its
// author can be judged at all.

import { domainOf, parseMailboxList } from "./address.ts";

const AT_MOST_ONE = ["sender", "reply-to", "to", "cc", "bcc", "subject", "message-id", "in-reply-to", "references"] as const;

/** Field counts by lower-cased name, and every From field's value (unfolded text). */
export interface HeaderCensus {
  readonly counts: ReadonlyMap<string, number>;
  readonly fromValues: readonly string[];
}

/** The first rule the message breaks, worded for the SMTP reply; undefined when it meets them all. */
export function brokenHeaderRule(census: HeaderCensus): string | undefined {
  const count = (name: string) => census.counts.get(name) ?? 0;
  const from = count("from");
  if (from === 0) return "the message has no From field";
  if (from > 1) return `the message has ${from} From fields, RFC 5322 allows one`;
  const { mailboxes } = parseMailboxList(census.fromValues[0] ?? "");
  if (mailboxes.length === 0) return "the From field holds no address with a domain";
  const domains = [...new Set(mailboxes.map(domainOf))];
  if (domains.length > 1) return `the From field names addresses in ${domains.length} domains; its author cannot be determined`;
  const date = count("date");
  if (date === 0) return "the message has no Date field";
  if (date > 1) return `the message has ${date} Date fields, RFC 5322 allows one`;
  for (const name of AT_MOST_ONE) {
    const n = count(name);
    if (n > 1) return `the message has ${n} ${displayName(name)} fields, RFC 5322 allows at most one`;
  }
  return undefined;
}

function displayName(lower: string): string {
  return lower === "message-id" ? "Message-ID" : lower.replace(/(^|-)([a-z])/g, (_, sep: string, c: string) => sep + c.toUpperCase());
}
