// Stage-scoped macro store with libmilter semantics: a MACRO packet for a stage replaces that
// stage's set and invalidates every later stage; lookups try the most recent stage first.

export interface MacroReader {
  /** `get("i")` and `get("{i}")` are the same macro; undefined means the MTA did not send it. */
  get(name: string): string | undefined;
  /** Every macro currently in scope, later stages winning. */
  all(): ReadonlyMap<string, string>;
}

// Stage bytes in MACRO packets, in protocol order. Postfix sends 'L' (EOH list) before every
// header and 'B' (EOM list) before every body chunk, so they share scopes with 'N' and 'E'.
const STAGE_ORDER: Readonly<Record<string, number>> = { C: 0, H: 1, M: 2, R: 3, T: 4, L: 5, N: 5, B: 6, E: 6 };
const UNKNOWN_COMMAND_STAGE = 7; // 'U': outside the transaction order
const MAIL_STAGE = 2;

function normalize(name: string): string {
  return name.length === 3 && name.startsWith("{") && name.endsWith("}") ? name[1]! : name;
}

export class MacroStore implements MacroReader {
  readonly #stages: Array<Map<string, string> | undefined> = [];

  /** Stores a MACRO packet; unknown stage bytes are ignored, as libmilter does. */
  set(stageByte: number, macros: ReadonlyMap<string, string>): void {
    const letter = String.fromCharCode(stageByte);
    const stage = letter === "U" ? UNKNOWN_COMMAND_STAGE : STAGE_ORDER[letter];
    if (stage === undefined) return;
    const normalized = new Map<string, string>();
    for (const [name, value] of macros) normalized.set(normalize(name), value);
    this.#stages[stage] = normalized;
    if (stage !== UNKNOWN_COMMAND_STAGE) {
      for (let later = stage + 1; later < UNKNOWN_COMMAND_STAGE; later++) this.#stages[later] = undefined;
    }
  }

  /** ABORT ends the transaction: MAIL-stage macros and later ones go with it. */
  resetTransaction(): void {
    for (let s = MAIL_STAGE; s < UNKNOWN_COMMAND_STAGE; s++) this.#stages[s] = undefined;
  }

  resetAll(): void {
    this.#stages.length = 0;
  }

  get(name: string): string | undefined {
    const key = normalize(name);
    for (let s = UNKNOWN_COMMAND_STAGE - 1; s >= 0; s--) {
      const value = this.#stages[s]?.get(key);
      if (value !== undefined) return value;
    }
    return this.#stages[UNKNOWN_COMMAND_STAGE]?.get(key);
  }

  all(): ReadonlyMap<string, string> {
    const merged = new Map<string, string>();
    for (const s of [UNKNOWN_COMMAND_STAGE, 0, 1, 2, 3, 4, 5, 6]) {
      for (const [k, v] of this.#stages[s] ?? []) merged.set(k, v);
    }
    return merged;
  }
}
