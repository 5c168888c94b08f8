// Where the history lives, from one configuration string: a file path is the embedded SQLite
// store, a postgres:// or postgresql:// URL the shared PostgreSQL one.

import type { HistoryReader, HistoryStore } from "./history.ts";
import { isPostgresUrl, openPgHistoryReader, openPgHistoryStore, redactUrl, type PgHistoryReaderOptions, type PgHistoryStoreOptions } from "./history-pg.ts";
import { openHistoryReader, openHistoryStore } from "./history-sqlite.ts";

export { isPostgresUrl };

/** The SQLite store's options; the PostgreSQL timeouts are ignored for a file. */
export type OpenHistoryOptions = PgHistoryStoreOptions;

/** Any other scheme://: a typo or a database we do not support, not a file name to create. */
function refuseOtherUrl(target: string): void {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
    throw new Error(`${redactUrl(target)}: unsupported history store; give a file path (SQLite) or a postgres:// URL`);
  }
}

/**
 * Opens the history for writing: a PostgreSQL URL connects and migrates the schema, a path
 * opens (creating) the SQLite file. Rejects on what the operator has to fix.
 */
export async function openHistory(target: string, options: OpenHistoryOptions): Promise<HistoryStore> {
  if (isPostgresUrl(target)) return openPgHistoryStore(target, options);
  refuseOtherUrl(target);
  return openHistoryStore(target, options);
}

/** Opens the history for reports (read-only). */
export async function openHistoryForReading(target: string, options: PgHistoryReaderOptions = {}): Promise<HistoryReader> {
  if (isPostgresUrl(target)) return openPgHistoryReader(target, options);
  refuseOtherUrl(target);
  return openHistoryReader(target);
}
