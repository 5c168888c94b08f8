// RFC 5322 §3.4 address lists, read as far as authentication needs: which mailboxes a From,
// Sender or Reply-To field names. Never throws: hostile input yields "no mailbox" (CVE-2021-34555
// crashed opendmarc on a From with several addresses or group syntax).

export interface MailboxList {
  /** addr-specs, domain lower-cased, in order. */
  readonly mailboxes: readonly string[];
  /** The field used group syntax ("Undisclosed recipients:;" or "team: a@x, b@y;"). */
  readonly group: boolean;
}

const MAX_FIELD = 64 * 1024; // longer fields are cut before parsing: the scan must stay cheap

/** Splits at top-level separators, outside quotes, comments and angle brackets. */
function scan(value: string): { parts: string[]; group: boolean } {
  const parts: string[] = [];
  let cur = "";
  let depth = 0; // comment nesting
  let quoted = false;
  let angle = false;
  let group = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === "\\" && (quoted || depth > 0)) {
      if (depth === 0) cur += c + (value[i + 1] ?? "");
      i++;
    } else if (depth > 0) {
      if (c === "(") depth++;
      else if (c === ")") depth--;
    } else if (quoted) {
      cur += c;
      if (c === '"') quoted = false;
    } else if (c === "(") {
      depth++;
      cur += " ";
    } else if (c === '"') {
      quoted = true;
      cur += c;
    } else if (c === "<") {
      angle = true;
      cur += c;
    } else if (c === ">") {
      angle = false;
      cur += c;
    } else if (!angle && c === ":") {
      // "display-name:" opens a group; what came before names it, not a mailbox.
      group = true;
      cur = "";
    } else if (!angle && (c === "," || c === ";")) {
      parts.push(cur);
      cur = "";
    } else cur += c;
  }
  parts.push(cur);
  return { parts, group };
}

function mailboxOf(part: string): string | undefined {
  const angle = /<([^<>]*)>\s*$/.exec(part);
  let spec = (angle ? angle[1]! : part).trim();
  // Obsolete route syntax "<@a,@b:user@host>".
  if (angle) spec = spec.replace(/^(?:@[^:]*:)/, "");
  if (!angle && /\s/.test(spec)) return undefined;
  const at = spec.lastIndexOf("@");
  if (at <= 0 || at === spec.length - 1) return undefined;
  const local = spec.slice(0, at);
  const domain = spec.slice(at + 1).toLowerCase().replace(/\.$/, "");
  if (!/^[^\s@<>()[\]\\,;:]+$/.test(domain) && !/^\[[^\]]*\]$/.test(domain)) return undefined;
  if (/[\s<>]/.test(local) && !/^".*"$/.test(local)) return undefined;
  return `${local}@${domain}`;
}

export function parseMailboxList(value: string): MailboxList {
  const { parts, group } = scan(value.length > MAX_FIELD ? value.slice(0, MAX_FIELD) : value);
  const mailboxes: string[] = [];
  for (const part of parts) {
    if (part.trim() === "") continue;
    const mailbox = mailboxOf(part);
    if (mailbox) mailboxes.push(mailbox);
  }
  return { mailboxes, group };
}

export function domainOf(mailbox: string): string {
  return mailbox.slice(mailbox.lastIndexOf("@") + 1);
}
