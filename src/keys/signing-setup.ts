// Which keys sign an author's mail: native `signing.keys` entries and opendkim's
// KeyTable/SigningTable, loaded together. Every key is loaded and safety-checked up front, so
// that a bad key fails the start (or `config check`, or a reload) and never a message.

import { loadKeySource, type LoadKeyOptions, type SigningKey } from "./load.ts";
import { openKeyTable, openSigningTable } from "./open.ts";
import { findSigningKeys, type KeySource, type KeyTable, type SigningTable } from "./tables.ts";

export interface NativeKeyEntry {
  readonly domain: string;
  readonly signingDomain?: string;
  readonly selector: string;
  readonly keyFile: string;
}

export interface SigningSources {
  readonly keys: readonly NativeKeyEntry[];
  readonly keyTable?: string;
  readonly signingTable?: string;
  readonly multipleSignatures: boolean;
  readonly requireSafeKeys: boolean;
  readonly minimumKeyBits: number;
}

export interface ChosenKey {
  readonly domain: string;
  readonly selector: string;
  readonly key: SigningKey;
  readonly identity?: string;
  /** Where the choice came from, for the log. */
  readonly source: string;
}

export interface SigningSetup {
  /** The keys for an author address (or bare domain); empty when we do not sign for it. */
  keysFor(author: string): Promise<ChosenKey[]>;
  /** How many keys are loaded (for the start-up log). */
  readonly keyCount: number;
}

export async function loadSigningSetup(sources: SigningSources): Promise<SigningSetup> {
  const options: LoadKeyOptions = { requireSafeKeys: sources.requireSafeKeys, minimumKeyBits: sources.minimumKeyBits };
  const cache = new Map<string, Promise<SigningKey>>();
  const load = (src: KeySource, origin: string): Promise<SigningKey> => {
    const id = src.kind === "file" ? `file:${src.path}` : `data:${origin}`;
    let key = cache.get(id);
    if (key === undefined) {
      key = loadKeySource(src, { ...options, origin });
      cache.set(id, key);
    }
    return key;
  };

  const native = await Promise.all(
    sources.keys.map(async (entry, i) => ({
      entry,
      key: await load({ kind: "file", path: entry.keyFile }, `signing.keys[${i + 1}]`),
    })),
  );

  let tables: { keys: KeyTable; signing: SigningTable } | undefined;
  if (sources.keyTable !== undefined || sources.signingTable !== undefined) {
    if (sources.keyTable === undefined || sources.signingTable === undefined) {
      throw new Error("signing.keyTable and signing.signingTable go together: set both or neither");
    }
    tables = { keys: await openKeyTable(sources.keyTable), signing: await openSigningTable(sources.signingTable) };
    // Preload every key a SigningTable can reach without "%": "%" paths depend on the author.
    for (const [name, entry] of tables.keys.entries) {
      if (entry.key.kind === "inline" || !entry.key.path.includes("%")) await load(entry.key, `KeyTable ${tables.keys.file} (${name})`);
    }
  }

  return {
    keyCount: cache.size,
    async keysFor(author: string): Promise<ChosenKey[]> {
      const domain = author.slice(author.lastIndexOf("@") + 1).toLowerCase().replace(/\.$/, "");
      const chosen: ChosenKey[] = [];
      for (const { entry, key } of native) {
        if (!domainMatches(entry.domain, domain)) continue;
        chosen.push({ domain: signingDomainOf(entry, domain), selector: entry.selector, key, source: `signing.keys (${entry.domain})` });
      }
      if (tables) {
        const requests = findSigningKeys(tables.signing, tables.keys, author, { multipleSignatures: sources.multipleSignatures });
        for (const r of requests) {
          chosen.push({
            domain: r.domain,
            selector: r.selector,
            key: await load(r.key, `KeyTable ${tables.keys.file} (${r.keyName})`),
            ...(r.identity ? { identity: r.identity } : {}),
            source: `${r.matched.file}:${r.matched.line} (${r.matched.pattern})`,
          });
        }
      }
      return chosen;
    },
  };
}

function domainMatches(pattern: string, domain: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, "");
  if (p === "*") return true;
  if (p.startsWith("*.")) return domain.endsWith(p.slice(1));
  return domain === p;
}

function signingDomainOf(entry: NativeKeyEntry, authorDomain: string): string {
  if (entry.signingDomain) return entry.signingDomain;
  if (entry.domain === "*") return authorDomain;
  return entry.domain.replace(/^\*\./, "");
}
