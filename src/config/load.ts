// YAML loading with errors an admin can act on: file, line, column, what is wrong, the fix.

import { existsSync, readFileSync } from "node:fs";
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node } from "yaml";
import { SCHEMA, defaultConfig, type Config, type Field, type FieldType, type Section } from "./schema.ts";

export const DEFAULT_CONFIG_PATH = "/etc/authmilter/authmilter.yaml";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly file: string;
  readonly line: number;
  readonly column: number;

  constructor(file: string, line: number, column: number, reason: string) {
    super(`${file}:${line}:${column}: ${reason}`);
    this.file = file;
    this.line = line;
    this.column = column;
  }
}

export interface LoadedConfig {
  readonly config: Config;
  /** The file read, or undefined when the embedded defaults are in use. */
  readonly source: string | undefined;
}

/**
 * An explicit path must exist; without one, the default path is used when present and the
 * embedded defaults otherwise (so `authmilter serve` runs on a fresh machine).
 */
export function loadConfig(explicitPath?: string): LoadedConfig {
  const path = explicitPath ?? DEFAULT_CONFIG_PATH;
  if (explicitPath === undefined && !existsSync(path)) return { config: defaultConfig(), source: undefined };
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(path, 0, 0, `cannot read the file: ${(err as Error).message}`);
  }
  return { config: parseConfig(text, path), source: path };
}

export function parseConfig(text: string, file: string): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const fail = (offset: number, reason: string): never => {
    const { line, col } = lines.linePos(offset);
    throw new ConfigError(file, line, col, reason);
  };
  const firstError = doc.errors[0];
  if (firstError) fail(firstError.pos[0], `YAML syntax: ${firstError.message.split("\n")[0]}`);

  const config = defaultConfig() as unknown as Record<string, unknown>;
  if (doc.contents === null) return config as unknown as Config;
  if (!isMap(doc.contents)) fail(start(doc.contents), "the file must be a mapping of options (key: value)");

  const at = (node: Node | null | undefined): number => (node ? start(node) : 0);
  const walk = (map: unknown, schema: Section, target: Record<string, unknown>, path: string) => {
    if (!isMap(map)) return;
    for (const pair of map.items) {
      const keyNode = pair.key as Node;
      const key = isScalar(keyNode) ? String(keyNode.value) : "";
      const entry = schema[key];
      const name = path === "" ? key : `${path}.${key}`;
      if (entry === undefined) {
        const hint = suggest(key, Object.keys(schema));
        fail(at(keyNode), `unknown option "${name}"${hint ? `; did you mean "${path === "" ? hint : `${path}.${hint}`}"?` : ""}`);
      }
      const valueNode = pair.value as Node | null;
      if (isField(entry!) && entry.type.kind === "entries") {
        const { item, required } = entry.type;
        if (valueNode !== null && !isSeq(valueNode)) fail(at(valueNode ?? keyNode), `"${name}" must be a list of entries (- key: value)`);
        target[entry.target] = ((isSeq(valueNode) ? valueNode.items : []) as Node[]).map((itemNode, i) => {
          if (!isMap(itemNode)) return fail(at(itemNode), `"${name}" entry ${i + 1} must be a mapping (key: value)`);
          const out: Record<string, unknown> = {};
          walk(itemNode, item, out, `${name}[${i + 1}]`);
          const missing = required.filter((k) => !(item[k] && (item[k] as Field).target in out));
          if (missing.length > 0) fail(at(itemNode), `"${name}" entry ${i + 1} lacks ${missing.map((m) => `"${m}"`).join(", ")}`);
          return out;
        });
      } else if (isField(entry!) && entry.type.kind === "list") {
        const items = isSeq(valueNode) ? (valueNode.items as Node[]) : valueNode === null ? [] : [valueNode];
        const check = entry.type.check;
        target[entry.target] = items.map((item) => {
          if (!isScalar(item)) return fail(at(item), `"${name}" must be a list of single values`);
          return convert({ kind: "string", ...(check ? { check } : {}) }, item, text, (reason) => fail(at(item), `"${name}": ${reason}`));
        });
      } else if (isField(entry!)) {
        if (!isScalar(valueNode)) fail(at(valueNode ?? keyNode), `"${name}" must be a single value`);
        target[entry!.target] = convert(entry!.type, valueNode as Node, text, (reason) => fail(at(valueNode), `"${name}": ${reason}`));
      } else {
        // "section:" with nothing under it (or only comments) is an empty section.
        if (valueNode === null || (isScalar(valueNode) && valueNode.value === null)) continue;
        if (!isMap(valueNode)) fail(at(valueNode), `"${name}" must be a section of options (key: value)`);
        walk(valueNode, entry as Section, target[key] as Record<string, unknown>, name);
      }
    }
  };
  walk(doc.contents, SCHEMA, config, "");
  // The authserv-id follows a configured host name unless it is set itself.
  const root = doc.contents;
  if (isMap(root) && !root.has("authservId") && root.has("hostname")) config["authservId"] = config["hostname"];
  return config as unknown as Config;
}

function isField(entry: Section | Field): entry is Field {
  return "type" in entry && "target" in entry && typeof (entry as Field).doc === "string";
}

function start(node: Node): number {
  return node.range?.[0] ?? 0;
}

function convert(type: FieldType, node: Node, text: string, fail: (reason: string) => never): unknown {
  const value = isScalar(node) ? node.value : undefined;
  const source = node.range ? text.slice(node.range[0], node.range[1]).trim() : String(value);
  switch (type.kind) {
    case "string": {
      if (typeof value !== "string" || value === "") return fail("expected a non-empty text value");
      try {
        type.check?.(value);
      } catch (err) {
        return fail((err as Error).message);
      }
      return value;
    }
    case "integer": {
      if (typeof value !== "number" || !Number.isInteger(value)) return fail(`expected a whole number, got ${source}`);
      if (value < type.min || value > type.max) return fail(`${value} is outside ${type.min}..${type.max}`);
      return value;
    }
    case "duration": {
      const ms = parseDuration(value);
      if (ms === undefined) return fail(`expected a duration such as 30s, 15m, 500ms or 90d (a bare number means seconds), got ${source}`);
      if (ms < type.minMs || ms > type.maxMs) return fail(`${source} is outside ${type.minMs} ms..${type.maxMs} ms`);
      return ms;
    }
    case "octal": {
      // Read the source text: YAML 1.2 reads an unquoted 0027 as decimal 27.
      const digits = source.replace(/^["']|["']$/g, "").replace(/^0o/, "");
      if (!/^[0-7]{1,4}$/.test(digits)) return fail(`expected an octal mode such as "0007", got ${source}`);
      return parseInt(digits, 8);
    }
    case "boolean": {
      if (typeof value !== "boolean") return fail(`expected true or false, got ${source}`);
      return value;
    }
    case "list":
    case "entries":
      return fail("a list cannot stand here");
    case "enum": {
      if (typeof value !== "string" || !type.values.includes(value)) {
        return fail(`expected one of ${type.values.join(", ")}, got ${source}`);
      }
      return value;
    }
  }
}

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(value: unknown): number | undefined {
  if (typeof value === "number" && Number.isFinite(value) && value >= 0) return Math.round(value * 1000);
  if (typeof value !== "string") return undefined;
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)$/.exec(value.trim());
  return m ? Math.round(Number(m[1]) * UNIT_MS[m[2]!]!) : undefined;
}

/** The closest known key, when the typo is small enough to be one. */
function suggest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}
