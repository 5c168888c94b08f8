// Writing the imported settings as YAML: keys in the order config/authmilter.example.yaml uses,
// a header listing what was not carried over and the notes, and each setting's comment above it.

import { Document, isMap, isScalar, type Pair, type Scalar } from "yaml";
import { VERSION } from "../version.ts";
import { isFieldEntry, type ImportContext } from "./import-context.ts";
import { SCHEMA, type Section } from "./schema.ts";

/** Top-level order of the written file, as config/authmilter.example.yaml has it. */
const TOP_ORDER = ["mode", "hostname", "authservId", "internalHosts", "externalIgnoreList", "signing", "verify", "policy", "actions", "limits", "dns", "milter", "log", "reports"];

export function orderTop(values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of TOP_ORDER) {
    const v = values[key];
    if (v === undefined) continue;
    const section = SCHEMA[key];
    out[key] = section !== undefined && !isFieldEntry(section) && isPlainObject(v) ? orderLike(section, v) : v;
  }
  return out;
}

function orderLike(section: Section, values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(section)) {
    const v = values[key];
    if (v === undefined) continue;
    const sub = section[key]!;
    out[key] = !isFieldEntry(sub) && isPlainObject(v) ? orderLike(sub, v) : v;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function renderYaml(ctx: ImportContext, values: Record<string, unknown>): string {
  const doc = new Document(values);
  const header: string[] = [
    ` authmilter configuration written by \`authmilter import\` (authmilter ${VERSION}) from:`,
    ...(ctx.dkim ? [`   opendkim:  ${ctx.dkim.file}`] : []),
    ...(ctx.dmarc ? [`   opendmarc: ${ctx.dmarc.file}`] : []),
    " Each setting names the option and line it came from; everything else keeps authmilter's",
    " default (config/authmilter.example.yaml documents every option). Check the file with:",
    "   authmilter config check --config <this file>",
    "",
    ` Not carried over (${ctx.unmapped.length}):`,
    ...(ctx.unmapped.length === 0 ? ["   (none)"] : ctx.unmapped.flatMap((u) => [`   ${u.where}: ${u.option} ${u.value}`, `       ${u.reason}`])),
    "",
    ` Notes (${ctx.notes.length}):`,
    ...(ctx.notes.length === 0 ? ["   (none)"] : ctx.notes.map((n) => `   - ${n.where ? `${n.where}: ` : ""}${n.text}`)),
  ];
  doc.commentBefore = header.join("\n");
  if (!isMap(doc.contents)) return doc.toString({ lineWidth: 0 });
  for (const [path, lines] of ctx.comments) {
    // A comment for a section that ended up empty goes to the nearest key that exists.
    const parts = path.split(".");
    let pair: Pair | undefined;
    while (pair === undefined && parts.length > 0) {
      pair = findPair(doc, parts.join("."));
      parts.pop();
    }
    pair ??= doc.contents.items[0] as Pair | undefined;
    if (pair === undefined) continue;
    const key = pair.key as Scalar;
    const text = lines.map((l) => ` ${l}`).join("\n");
    key.commentBefore = key.commentBefore ? `${key.commentBefore}\n${text}` : text;
  }
  return doc.toString({ lineWidth: 0 });
}

function findPair(doc: Document, path: string): Pair | undefined {
  let node: unknown = doc.contents;
  let pair: Pair | undefined;
  for (const part of path.split(".")) {
    if (!isMap(node)) return undefined;
    pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === part) as Pair | undefined;
    if (pair === undefined) return undefined;
    node = pair.value;
  }
  return pair;
}
