// Reading opendkim.conf and opendmarc.conf the way those programs do (libopendkim's config.c,
// which opendmarc copies): one "Name value" per line, "#" or a CR ends the line, names match
// case-insensitively, the value is the rest of the line with surrounding blanks removed, the last
// setting of a name wins, booleans are judged by their first character and integers are read by
// strtol(value, &end, 0) (so "007" is octal and "0x1f" hexadecimal). opendkim also has Include.

import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";

export type Program = "opendkim" | "opendmarc";
export type OptionType = "boolean" | "integer" | "string";

export interface ConfEntry {
  readonly program: Program;
  /** The option's canonical spelling (as opendkim/opendmarc document it). */
  readonly name: string;
  /** The value with surrounding blanks removed, as the program stores it. */
  readonly value: string;
  readonly file: string;
  readonly line: number;
}

export interface ConfProblem {
  readonly file: string;
  readonly line: number;
  readonly message: string;
}

export interface ParsedConf {
  readonly program: Program;
  readonly file: string;
  /** Every setting in file order (Include expanded in place). */
  readonly entries: readonly ConfEntry[];
  /** Lines the program itself would refuse (it would not start); they are left out of `entries`. */
  readonly problems: readonly ConfProblem[];
  /** The setting that applies (the last one) for a name, looked up case-insensitively. */
  get(name: string): ConfEntry | undefined;
  /** Every setting of a name, in file order. */
  all(name: string): ConfEntry[];
}

export class ConfReadError extends Error {
  override readonly name = "ConfReadError";
}

// libopendkim/config.c MAXLEVEL.
const MAX_INCLUDE_DEPTH = 5;

export async function readConfFile(path: string, program: Program, known: ReadonlyMap<string, OptionType>): Promise<ParsedConf> {
  const entries: ConfEntry[] = [];
  const problems: ConfProblem[] = [];
  const byName = new Map<string, string>([...known.keys()].map((k) => [k.toLowerCase(), k]));

  const load = async (file: string, depth: number, from?: { file: string; line: number }): Promise<void> => {
    if (depth > MAX_INCLUDE_DEPTH) {
      problems.push({ file: from?.file ?? file, line: from?.line ?? 0, message: `Include nested more than ${MAX_INCLUDE_DEPTH} deep; ${program} refuses this` });
      return;
    }
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (err as Error).message;
      if (from === undefined) throw new ConfReadError(`${file}: cannot read: ${why}`, { cause: err });
      problems.push({ ...from, message: `Include ${file}: cannot read: ${why}` });
      return;
    }
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = i + 1;
      const raw = lines[i] ?? "";
      const cut = raw.search(/[#\r]/);
      const content = cut === -1 ? raw : raw.slice(0, cut);
      const m = /^[ \t]*([^ \t]+)(?:[ \t]+(.*?))?[ \t]*$/.exec(content);
      if (m === null) continue; // blank
      const written = m[1] ?? "";
      const value = m[2] ?? "";
      const name = byName.get(written.toLowerCase());
      if (name === undefined) {
        entries.push({ program, name: written, value, file, line });
        continue;
      }
      if (value === "") {
        problems.push({ file, line, message: `${written} has no value; ${program} refuses this ("required value missing")` });
        continue;
      }
      if (name === "Include" && program === "opendkim") {
        await load(resolve(dirname(file), value), depth + 1, { file, line });
        continue;
      }
      const type = known.get(name);
      if (type === "boolean" && parseConfBoolean(value) === undefined) {
        problems.push({ file, line, message: `${written} ${value}: not a boolean (yes/no, true/false, 1/0); ${program} refuses this ("illegal value")` });
        continue;
      }
      if (type === "integer" && parseConfInteger(value) === undefined) {
        problems.push({ file, line, message: `${written} ${value}: not an integer; ${program} refuses this ("illegal value")` });
        continue;
      }
      entries.push({ program, name, value, file, line });
    }
  };
  await load(path, 0);

  const lower = (s: string) => s.toLowerCase();
  return {
    program,
    file: path,
    entries,
    problems,
    get: (name) => entries.findLast((e) => lower(e.name) === lower(name)),
    all: (name) => entries.filter((e) => lower(e.name) === lower(name)),
  };
}

/** opendkim/opendmarc booleans: only the first character counts (config.c). */
export function parseConfBoolean(value: string): boolean | undefined {
  const c = value[0] ?? "";
  if ("tTyY1".includes(c) && c !== "") return true;
  if ("fFnN0".includes(c) && c !== "") return false;
  return undefined;
}

/** strtol(value, &end, 0) with *end required to be the end: sign, then 0x hex, 0 octal or decimal. */
export function parseConfInteger(value: string): number | undefined {
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(value);
  if (m === null) return undefined;
  const digits = m[2] ?? "0";
  const n = /^0[xX]/.test(digits) ? parseInt(digits.slice(2), 16) : digits.length > 1 && digits.startsWith("0") ? parseInt(digits, 8) : parseInt(digits, 10);
  return m[1] === "-" ? -n : n;
}

/** Where a setting came from, as "file:line". */
export function where(entry: { readonly file: string; readonly line: number }): string {
  return `${entry.file}:${entry.line}`;
}
