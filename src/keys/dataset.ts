// Reading opendkim "data set" flat files (opendkim(8) DATA SETS a, b, i and m) the way
// opendkim-db.c does, so that existing KeyTable / SigningTable / host-list files load unchanged.

import { readFile } from "node:fs/promises";
import { TableError } from "./errors.ts";

/** One meaningful line: `key` is the text up to the first whitespace, `value` the trimmed rest. */
export interface DatasetLine {
  readonly line: number;
  readonly key: string;
  readonly value: string | undefined;
}

// isspace() in the C locale; "\r" is among them, which is why CRLF files work in opendkim.
const SPACE = /[ \t\r\n\v\f]/;

/**
 * Splits a flat data-set file into lines the way opendkim-db.c reads them: a "#" anywhere ends
 * the line (there is no quoting), leading and trailing whitespace is dropped, blank lines are
 * skipped, the key ends at the first whitespace. There is no line continuation in these files.
 * opendkim reads with fgets() into 1024 bytes and so silently splits longer lines; we do not.
 */
export function datasetLines(text: string): DatasetLine[] {
  const out: DatasetLine[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    let raw = lines[i] ?? "";
    const hash = raw.indexOf("#");
    if (hash !== -1) raw = raw.slice(0, hash);
    raw = raw.replace(/^[ \t\r\n\v\f]+|[ \t\r\n\v\f]+$/g, "");
    if (raw === "") continue;
    const gap = raw.search(SPACE);
    if (gap === -1) {
      out.push({ line: i + 1, key: raw, value: undefined });
    } else {
      const value = raw.slice(gap).replace(/^[ \t\r\n\v\f]+/, "");
      out.push({ line: i + 1, key: raw.slice(0, gap), value });
    }
  }
  return out;
}

/** A data-set specification as written in opendkim.conf. */
export type DatasetSpec =
  | { readonly kind: "file"; readonly path: string }
  | { readonly kind: "refile"; readonly path: string }
  | { readonly kind: "csl"; readonly values: readonly string[] };

// Types opendkim can be built with that we deliberately do not implement: each needs a client
// library and a server; a flat file generated from them does the same job.
const UNSUPPORTED = ["db", "dsn", "ldap", "ldaps", "ldapi", "lua", "memcache", "mdb", "erlang", "socket"];

/**
 * Classifies a data-set string as opendkim-db.c does: "file:", "refile:", "csl:", a path
 * starting with "/", or else a comma-separated list. A comma before the first colon means a
 * list (opendkim's rule, so "a,b:c" is a list).
 */
export function parseDatasetSpec(spec: string, setting: string): DatasetSpec {
  const colon = spec.indexOf(":");
  const comma = spec.indexOf(",");
  if (colon === -1 || (comma !== -1 && comma < colon)) {
    if (spec.startsWith("/")) return { kind: "file", path: spec };
    return { kind: "csl", values: splitCsl(spec) };
  }
  const type = spec.slice(0, colon).toLowerCase();
  const rest = spec.slice(colon + 1);
  switch (type) {
    case "file":
      return { kind: "file", path: rest };
    case "refile":
      return { kind: "refile", path: rest };
    case "csl":
      return { kind: "csl", values: splitCsl(rest) };
    default:
      if (UNSUPPORTED.includes(type)) {
        throw new TableError(
          setting,
          undefined,
          `data set type "${type}:" is not supported by authmilter; export it to a flat file and use file:/path (or refile:/path for patterns)`,
        );
      }
      // An unknown prefix is what opendkim reports as "Unknown database type".
      throw new TableError(setting, undefined, `unknown data set type "${type}:" in "${spec}"`);
  }
}

function splitCsl(text: string): string[] {
  return text
    .split(",")
    .map((v) => v.trim())
    .filter((v) => v !== "");
}

/** Reads a data-set file as UTF-8; I/O errors become a TableError naming the file. */
export async function readDatasetFile(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "file does not exist"
        : code === "EACCES"
          ? "permission denied (the file must be readable by the user authmilter runs as)"
          : code === "EISDIR"
            ? "is a directory, not a file"
            : `cannot be read (${code ?? String(err)})`;
    throw new TableError(path, undefined, why, { cause: err });
  }
}
