// Laying out a DKIM-Signature value: tags in opendkim's order, folded so that no line is wider
// than 78 columns once the milter has put "DKIM-Signature: " in front of it.
//
// Folds are LF + TAB because the value goes to Postfix through INSHEADER, which wants LF-only
// folding (reference §7); the hash is computed over the CRLF form a recipient will see. Folds
// are placed only where RFC 6376 §3.5 allows FWS: between tags, around the colons of h=, and
// anywhere inside the base64 of bh= and b=.

const WIDTH = 78;
const TAB_WIDTH = 8;
/** "DKIM-Signature: ": the milter layer writes the name, the colon and one space. */
export const FIELD_PREFIX = "DKIM-Signature: ";

class Folder {
  private readonly lines: string[] = [];
  private line = "";
  private column = FIELD_PREFIX.length;
  private empty = true;

  /** Text that must not be split; preceded by one space unless it starts a line. */
  word(text: string, space = true): void {
    const sep = space && !this.empty ? " " : "";
    if (!this.empty && this.column + sep.length + text.length > WIDTH) {
      this.fold();
      this.word(text, false);
      return;
    }
    this.line += sep + text;
    this.column += sep.length + text.length;
    this.empty = false;
  }

  /** Text that may be split anywhere (base64 with FWS allowed between any two characters). */
  fill(text: string): void {
    let rest = text;
    while (rest !== "") {
      const room = WIDTH - this.column;
      if (room <= 0) {
        this.fold();
        continue;
      }
      this.line += rest.slice(0, room);
      this.column += Math.min(room, rest.length);
      this.empty = false;
      rest = rest.slice(room);
    }
  }

  /** The value so far, folds as LF + TAB. */
  text(): string {
    return [...this.lines, this.line].join("\n");
  }

  private fold(): void {
    this.lines.push(this.line);
    this.line = "\t";
    this.column = TAB_WIDTH;
    this.empty = true;
  }
}

export interface SignatureTags {
  readonly algorithm: string;
  readonly canonicalization: string;
  readonly domain: string;
  readonly selector: string;
  /** Already dkim-quoted-printable. */
  readonly identity?: string;
  readonly timestamp: number;
  readonly expiration?: number;
  readonly headerNames: readonly string[];
  readonly bodyHash: string;
}

export interface SignatureLayout {
  /** The value with an empty b=, the form that is hashed (§3.7). */
  readonly unsigned: string;
  /** Completes the value with the base64 signature. */
  complete(signature: string): string;
}

/**
 * Folds the tags into a value that ends in "b=". The signature is appended by continuing the same
 * fold, so everything before "b=" is byte-for-byte what was hashed, as simple header
 * canonicalisation requires.
 */
export function layoutSignature(tags: SignatureTags): SignatureLayout {
  const f = new Folder();
  f.word("v=1;");
  f.word(`a=${tags.algorithm};`);
  f.word(`c=${tags.canonicalization};`);
  f.word(`d=${tags.domain};`);
  f.word(`s=${tags.selector};`);
  if (tags.identity !== undefined) f.word(`i=${tags.identity};`);
  f.word(`t=${tags.timestamp};`);
  if (tags.expiration !== undefined) f.word(`x=${tags.expiration};`);
  const names = tags.headerNames;
  names.forEach((name, i) => {
    const piece = `${i === 0 ? "h=" : ""}${name}${i === names.length - 1 ? ";" : ":"}`;
    f.word(piece, i === 0);
  });
  // 44 base64 characters for SHA-256: always fits on a line of its own.
  f.word(`bh=${tags.bodyHash};`);
  f.word("b=");
  const unsigned = f.text();
  return {
    unsigned,
    complete(signature: string): string {
      f.fill(signature);
      return f.text();
    },
  };
}

/**
 * dkim-quoted-printable (RFC 6376 §2.11) for i=: anything but printable ASCII other than ";" and
 * "=" becomes =XX, so a UTF-8 local part or a ";" cannot break the tag list.
 */
export function dkimQuotedPrintable(value: string): string {
  let out = "";
  for (const byte of Buffer.from(value, "utf8")) {
    const safe = byte >= 0x21 && byte <= 0x7e && byte !== 0x3b && byte !== 0x3d;
    out += safe ? String.fromCharCode(byte) : `=${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
