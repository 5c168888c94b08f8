// Line ends as DKIM verification sees them.

const LF = 0x0a;
const CR = 0x0d;

/**
 * Bare LF becomes CRLF. Postfix stores lines and delivers them with CRLF, and mailauth's
 * verifier takes a bare LF as a line end, so our signer must hash it as one too, or a message
 * from an MTA that passes bare LF would fail our own verification.
 */
export class CrlfNormalizer {
  #lastWasCr = false;

  push(chunk: Buffer): Buffer {
    let bare = 0;
    for (let i = chunk.indexOf(LF); i !== -1; i = chunk.indexOf(LF, i + 1)) {
      if ((i === 0 ? !this.#lastWasCr : chunk[i - 1] !== CR)) bare++;
    }
    const last = chunk.length > 0 ? chunk[chunk.length - 1] === CR : this.#lastWasCr;
    if (bare === 0) {
      this.#lastWasCr = last;
      return chunk;
    }
    const out = Buffer.allocUnsafe(chunk.length + bare);
    let o = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === LF && (i === 0 ? !this.#lastWasCr : chunk[i - 1] !== CR)) out[o++] = CR;
      out[o++] = b;
    }
    this.#lastWasCr = last;
    return out;
  }
}
