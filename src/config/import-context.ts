// The state of one `authmilter import` run, shared by the mapping steps (import-*.ts): the two
// parsed files, the settings written so far with their YAML comments, the notes, and which
// settings have been dealt with, so that every other one is reported as not carried over.

import { isAbsolute, resolve } from "node:path";
import { datasetLines, parseDatasetSpec, readDatasetFile } from "../keys/dataset.ts";
import { TableError } from "../keys/errors.ts";
import { where, type ConfEntry, type ParsedConf, type Program } from "./import-conf.ts";
import { OPENDKIM_OPTIONS, OPENDMARC_OPTIONS, unmappedReason } from "./import-options.ts";
import { SCHEMA, type Field, type Section } from "./schema.ts";

/** An option that was not carried over. */
export interface UnmappedOption {
  readonly program: Program;
  readonly option: string;
  readonly value: string;
  /** "file:line" */
  readonly where: string;
  readonly reason: string;
}

/** Something the admin should know about a carried-over setting, a default, or a file read. */
export interface ImportNote {
  readonly where?: string;
  readonly text: string;
}

export interface DatasetItem {
  readonly key: string;
  readonly value: string | undefined;
  /** "file:line" of the item, or of the setting for an inline list. */
  readonly where: string;
}

export interface Dataset {
  readonly kind: "file" | "refile" | "csl";
  /** For files: the absolute path read. */
  readonly path?: string;
  /** The spec with its path made absolute, as it goes into the YAML. */
  readonly spec: string;
  readonly items: readonly DatasetItem[];
}

export class ImportContext {
  readonly dkim: ParsedConf | undefined;
  readonly dmarc: ParsedConf | undefined;
  readonly hostname: string;
  readonly values: Record<string, unknown> = {};
  readonly comments = new Map<string, string[]>();
  readonly unmapped: UnmappedOption[] = [];
  readonly notes: ImportNote[] = [];
  /** Settings dealt with (carried over, or explained in a note); the rest are reported unmapped. */
  readonly #handled = new Set<ConfEntry>();
  /** Unmapped options with a reason more specific than the table's. */
  readonly #reasons = new Map<ConfEntry, string>();

  constructor(dkim: ParsedConf | undefined, dmarc: ParsedConf | undefined, hostname: string) {
    this.dkim = dkim;
    this.dmarc = dmarc;
    this.hostname = hostname;
  }

  *confs(): Generator<ParsedConf> {
    if (this.dkim) yield this.dkim;
    if (this.dmarc) yield this.dmarc;
  }

  /** The setting that applies, marked as dealt with. */
  take(conf: ParsedConf | undefined, name: string): ConfEntry | undefined {
    const e = conf?.get(name);
    if (e) this.#handled.add(e);
    return e;
  }

  peek(conf: ParsedConf | undefined, name: string): ConfEntry | undefined {
    return conf?.get(name);
  }

  set(path: string, value: unknown, comment?: string): void {
    const parts = path.split(".");
    let node = this.values;
    for (const p of parts.slice(0, -1)) {
      node[p] ??= {};
      node = node[p] as Record<string, unknown>;
    }
    node[parts.at(-1)!] = value;
    if (comment !== undefined) this.comment(path, comment);
  }

  get(path: string): unknown {
    let node: unknown = this.values;
    for (const p of path.split(".")) node = (node as Record<string, unknown> | undefined)?.[p];
    return node;
  }

  comment(path: string, text: string): void {
    const list = this.comments.get(path) ?? [];
    list.push(text);
    this.comments.set(path, list);
  }

  note(whereText: string | undefined, text: string): void {
    this.notes.push(whereText === undefined ? { text } : { where: whereText, text });
  }

  /** Marks a setting as not carried over, with a reason specific to this file. */
  reject(entry: ConfEntry, reason: string): void {
    this.#handled.delete(entry);
    this.#reasons.set(entry, reason);
  }

  source(e: ConfEntry): string {
    return `${e.name} ${e.value} (${where(e)})`;
  }

  noteDuplicates(conf: ParsedConf): void {
    const seen = new Map<string, ConfEntry[]>();
    for (const e of conf.entries) {
      const k = e.name.toLowerCase();
      seen.set(k, [...(seen.get(k) ?? []), e]);
    }
    for (const list of seen.values()) {
      if (list.length < 2) continue;
      const last = list.at(-1)!;
      for (const e of list.slice(0, -1)) this.#handled.add(e);
      this.note(where(last), `${last.name} is set ${list.length} times (${list.map((e) => `line ${e.line}`).join(", ")}); the last one applies, as in ${conf.program}`);
    }
  }

  /** A path as the program opens it: relative paths are relative to BaseDirectory (else "/"). */
  abs(conf: ParsedConf, path: string): string {
    if (isAbsolute(path)) return path;
    const base = conf.get("BaseDirectory")?.value ?? "/";
    return resolve(isAbsolute(base) ? base : resolve("/", base), path);
  }

  /** Reads a data-set setting ("file:", "refile:", a path or an inline list). */
  async dataset(conf: ParsedConf, entry: ConfEntry): Promise<Dataset> {
    const ds = parseDatasetSpec(entry.value, entry.name);
    if (ds.kind === "csl") {
      return { kind: "csl", spec: entry.value, items: ds.values.map((v) => ({ key: v, value: undefined, where: where(entry) })) };
    }
    const path = this.abs(conf, ds.path);
    const text = await readDatasetFile(path);
    const spec = ds.kind === "refile" ? `refile:${path}` : path;
    return { kind: ds.kind, path, spec, items: datasetLines(text).map((l) => ({ key: l.key, value: l.value, where: `${path}:${l.line}` })) };
  }

  /** A data set, or undefined (with the setting reported) when it cannot be read. */
  async tryDataset(conf: ParsedConf, entry: ConfEntry): Promise<Dataset | undefined> {
    try {
      return await this.dataset(conf, entry);
    } catch (err) {
      if (!(err instanceof TableError)) throw err;
      this.reject(entry, `cannot be read: ${err.message}`);
      return undefined;
    }
  }

  /** Runs the schema's own check on a value; returns the reason it fails, if it does. */
  schemaCheck(path: string, value: string): string | undefined {
    const field = fieldAt(path);
    const type = field?.type;
    const check = type && (type.kind === "string" || type.kind === "list") ? type.check : undefined;
    try {
      check?.(value);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  /** Reports every setting no mapping step dealt with, with the reason it was not carried over. */
  leftovers(): void {
    for (const conf of this.confs()) {
      const known = conf.program === "opendkim" ? OPENDKIM_OPTIONS : OPENDMARC_OPTIONS;
      for (const e of conf.entries) {
        if (this.#handled.has(e)) continue;
        let reason = this.#reasons.get(e) ?? unmappedReason(conf.program, e.name);
        if (reason === undefined && !known.has(e.name)) {
          reason =
            conf.program === "opendmarc" && e.name.toLowerCase() === "ignoredomains"
              ? `not an opendmarc option (opendmarc refuses to start: "unrecognized parameter"); its option for this is IgnoreMailFrom (policy.dmarc.ignoreDomains)`
              : `not an ${conf.program} option (${conf.program} refuses to start: "unrecognized parameter")`;
        }
        this.unmapped.push({ program: conf.program, option: e.name, value: e.value, where: where(e), reason: reason ?? "not carried over" });
      }
    }
  }
}

/** The schema field at a dotted path; "signing.keys.domain" reaches into the entries' item. */
function fieldAt(path: string): Field | undefined {
  let node: Section | Field | undefined = SCHEMA;
  for (const part of path.split(".")) {
    if (node === undefined) return undefined;
    if (isFieldEntry(node)) node = node.type.kind === "entries" ? node.type.item[part] : undefined;
    else node = node[part];
  }
  return node !== undefined && isFieldEntry(node) ? node : undefined;
}

export function isFieldEntry(entry: Section | Field): entry is Field {
  return "type" in entry && "target" in entry && typeof (entry as Field).doc === "string";
}
