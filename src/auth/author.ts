// The author address of a message, from a From: (or Sender:) field value: enough to pick a
// signing key. Full RFC 5322 checks (several From addresses, groups) belong to the policy layer.

/** The addr-spec of the first mailbox, lower-cased domain; undefined when there is none. */
export function firstMailbox(value: string): string | undefined {
  // Comments may hold anything, "<" and "@" included; quoted display names too.
  const text = value.replace(/\((?:[^()\\]|\\.)*\)/g, " ").replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const angle = /<\s*([^<>\s]+@[^<>\s]+)\s*>/.exec(text);
  const bare = angle ? undefined : /(?:^|[\s,:;])([^\s<>,:;"]+@[^\s<>,:;"]+)/.exec(text);
  const address = (angle ?? bare)?.[1]?.replace(/^.*:/, "");
  if (!address) return undefined;
  const at = address.lastIndexOf("@");
  return `${address.slice(0, at)}@${address.slice(at + 1).toLowerCase().replace(/\.$/, "")}`;
}
