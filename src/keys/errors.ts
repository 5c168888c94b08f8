// Typed errors of the key layer. Each names the file (and line, for tables) and says how to fix
// the problem, because the reader is an administrator looking at a refused start-up.

/** A table or host list that cannot be used: `file`, `line` (undefined for the whole file). */
export class TableError extends Error {
  readonly file: string;
  readonly line: number | undefined;
  readonly reason: string;

  constructor(file: string, line: number | undefined, reason: string, options?: ErrorOptions) {
    super(line === undefined ? `${file}: ${reason}` : `${file}:${line}: ${reason}`, options);
    this.name = "TableError";
    this.file = file;
    this.line = line;
    this.reason = reason;
  }
}

export type KeyErrorCode =
  | "not-found"
  | "unreadable"
  | "not-a-file"
  | "unsafe-mode"
  | "unsafe-owner"
  | "unsafe-directory"
  | "encrypted"
  | "raw-ed25519-seed"
  | "invalid"
  | "unsupported-type"
  | "too-small"
  | "invalid-option"
  | "exists";

/** A private key that cannot be used; `file` is the path or a description of inline key data. */
export class KeyError extends Error {
  readonly file: string;
  readonly code: KeyErrorCode;

  constructor(file: string, code: KeyErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KeyError";
    this.file = file;
    this.code = code;
  }
}

/** A DKIM key record (TXT) or zone-file entry that cannot be parsed. */
export class RecordError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RecordError";
  }
}
