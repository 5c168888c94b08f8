// A header field as the milter hands it over: name, and the value's exact bytes after the
// colon (HDR_LEADSPC), folded lines joined by bare LF (reference §7).

export interface HeaderField {
  readonly name: string;
  readonly value: Buffer;
}

const LF = 0x0a;
const CR = 0x0d;

/** The field as it stands in the message: `name:value` with CRLF line ends, for hashing. */
export function wireForm(field: HeaderField): Buffer {
  const name = Buffer.from(`${field.name}:`, "latin1");
  const v = field.value;
  let lfs = 0;
  for (let i = v.indexOf(LF); i !== -1; i = v.indexOf(LF, i + 1)) if (v[i - 1] !== CR) lfs++;
  const out = Buffer.allocUnsafe(name.length + v.length + lfs + 2);
  name.copy(out, 0);
  let o = name.length;
  for (let i = 0; i < v.length; i++) {
    if (v[i] === LF && v[i - 1] !== CR) out[o++] = CR;
    out[o++] = v[i]!;
  }
  out[o++] = CR;
  out[o++] = LF;
  return out;
}

/** The value as text for parsing: unfolded, leading/trailing space trimmed (bytes kept as latin1). */
export function unfoldedText(field: HeaderField): string {
  return field.value.toString("latin1").replace(/\r?\n(?=[ \t])/g, "").trim();
}

export function isNamed(field: HeaderField, name: string): boolean {
  return field.name.toLowerCase() === name.toLowerCase();
}
