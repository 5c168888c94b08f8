// `authmilter import`: turns an opendkim.conf and an opendmarc.conf into one authmilter YAML file
// that behaves the same, following the files they name (KeyTable, SigningTable, host lists), and
// says which options it could not carry over and why.
//
// Rules: a setting the admin wrote is carried over when authmilter has an equivalent. Where
// opendkim/opendmarc's default differs from authmilter's, the YAML keeps the old behaviour when
// the difference would change what happens to mail (rejections, holds) or what the log says
// (SyslogSuccess, LogWhy), and otherwise leaves authmilter's default in place with a note. Paths
// are written absolute (BaseDirectory applied).

import { hostname as osHostname } from "node:os";
import { ConfReadError, readConfFile, where } from "./import-conf.ts";
import { ImportContext, type ImportNote, type UnmappedOption } from "./import-context.ts";
import { mapDns, mapLimits, mapMilter, postfixMilter } from "./import-daemon.ts";
import { mapHostLists } from "./import-hosts.ts";
import { mapAuthservId, mapMode } from "./import-identity.ts";
import { mapHistory, mapLogging } from "./import-logging.ts";
import { OPENDKIM_OPTIONS, OPENDMARC_OPTIONS } from "./import-options.ts";
import { mapSigning } from "./import-signing.ts";
import { mapActions, mapPolicy, mapVerify } from "./import-verify.ts";
import { orderTop, renderYaml } from "./import-yaml.ts";
import { parseConfig } from "./load.ts";

export { ConfReadError, postfixMilter };
export type { ImportNote, UnmappedOption };

export interface ImportOptions {
  /** Path of opendkim.conf. */
  readonly opendkim?: string;
  /** Path of opendmarc.conf. */
  readonly opendmarc?: string;
  /** What "HOSTNAME" stands for (gethostname() of the machine that ran the milters). */
  readonly hostname?: string;
}

export interface ImportResult {
  /** The YAML file's text, comments included. */
  readonly yaml: string;
  /** The settings written, as plain data in YAML layout. */
  readonly values: Record<string, unknown>;
  readonly unmapped: readonly UnmappedOption[];
  readonly notes: readonly ImportNote[];
}

export class ImportError extends Error {
  override readonly name = "ImportError";
}

export async function importConfigs(options: ImportOptions): Promise<ImportResult> {
  if (options.opendkim === undefined && options.opendmarc === undefined) {
    throw new ImportError("nothing to import: name opendkim.conf, opendmarc.conf or both");
  }
  const dkim = options.opendkim === undefined ? undefined : await readConfFile(options.opendkim, "opendkim", OPENDKIM_OPTIONS);
  const dmarc = options.opendmarc === undefined ? undefined : await readConfFile(options.opendmarc, "opendmarc", OPENDMARC_OPTIONS);
  const ctx = new ImportContext(dkim, dmarc, options.hostname ?? osHostname());
  await mapAll(ctx);
  const values = orderTop(ctx.values);
  const yaml = renderYaml(ctx, values);
  // A file we write must load; anything else is a bug in the importer, not the admin's problem.
  parseConfig(yaml, "(imported configuration)");
  return { yaml, values, unmapped: ctx.unmapped, notes: ctx.notes };
}

/** Every mapping step, in the order their notes and comments appear in the written file. */
async function mapAll(ctx: ImportContext): Promise<void> {
  for (const conf of ctx.confs()) {
    for (const p of conf.problems) ctx.note(`${p.file}:${p.line}`, `${p.message}; the line is ignored here`);
    ctx.noteDuplicates(conf);
    const base = ctx.take(conf, "BaseDirectory");
    if (base) {
      ctx.note(where(base), `BaseDirectory ${base.value}: relative paths in ${conf.program}'s files are resolved against it; the YAML holds absolute paths`);
    }
  }
  mapMode(ctx);
  mapAuthservId(ctx);
  await mapHostLists(ctx);
  await mapSigning(ctx);
  mapVerify(ctx);
  await mapPolicy(ctx);
  mapActions(ctx);
  mapLimits(ctx);
  mapDns(ctx);
  mapMilter(ctx);
  mapLogging(ctx);
  mapHistory(ctx);
  ctx.leftovers();
}
