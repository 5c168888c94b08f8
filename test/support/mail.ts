// Reading delivered messages back: just enough RFC 5322 header parsing for assertions.

export interface HeaderField {
  readonly name: string;
  /** Unfolded (line breaks of continuation lines removed), leading/trailing space trimmed. */
  readonly value: string;
  /** The field as it appears in the message, folding included, without the final CRLF. */
  readonly raw: string;
}

/** The header section, in order. Stops at the first empty line. */
export function parseHeaders(message: Buffer | string): HeaderField[] {
  const text = typeof message === "string" ? message : message.toString("utf8");
  const end = text.search(/\r?\n\r?\n/);
  const block = end < 0 ? text : text.slice(0, end);
  const fields: HeaderField[] = [];
  for (const line of block.split(/\r?\n/)) {
    const last = fields[fields.length - 1];
    if (/^[ \t]/.test(line) && last !== undefined) {
      fields[fields.length - 1] = { name: last.name, value: `${last.value}${line}`.trim(), raw: `${last.raw}\r\n${line}` };
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    fields.push({ name: line.slice(0, colon), value: line.slice(colon + 1).trim(), raw: line });
  }
  return fields;
}

/** Values of every field called `name` (case-insensitive), top to bottom. */
export function headerValues(message: Buffer | string, name: string): string[] {
  const wanted = name.toLowerCase();
  return parseHeaders(message)
    .filter((field) => field.name.toLowerCase() === wanted)
    .map((field) => field.value);
}

/** The body: everything after the first empty line. */
export function bodyOf(message: Buffer | string): string {
  const text = typeof message === "string" ? message : message.toString("utf8");
  const match = /\r?\n\r?\n/.exec(text);
  return match === null ? "" : text.slice(match.index + match[0].length);
}

/** A Message-ID no other test run will produce, so a delivered message can be found by it. */
export function uniqueMessageId(tag: string): string {
  return `<${tag}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2, 10)}@e2e.authmilter.test>`;
}
