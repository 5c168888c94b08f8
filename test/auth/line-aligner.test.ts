import { describe, expect, it } from "vitest";
import { CrlfNormalizer, LineAligner } from "../../src/auth/line-aligner.ts";

function run(chunks: string[]): string[] {
  const aligner = new LineAligner();
  const out = chunks.map((c) => aligner.push(Buffer.from(c))).filter((b) => b !== undefined);
  const rest = aligner.flush();
  return [...out, ...(rest ? [rest] : [])].map(String);
}

describe("LineAligner", () => {
  it("hands on only whole lines and keeps every byte in order", () => {
    const pieces = run(["ab", "c\r", "\nde", "f\r\ng", "h", "\r\n"]);
    expect(pieces).toEqual(["abc\r\n", "def\r\n", "gh\r\n"]);
  });

  it("gives a long line in one piece however it was cut", () => {
    const line = "x".repeat(100_000);
    const chunks = line.match(/.{1,999}/g)!.concat(["\r\nnext\r\n"]);
    expect(run(chunks)).toEqual([`${line}\r\nnext\r\n`]);
  });

  it("flushes a last line without its line end", () => {
    expect(run(["a\r\nb", "c"])).toEqual(["a\r\n", "bc"]);
  });

  it("passes an empty body as nothing", () => {
    expect(run([])).toEqual([]);
  });
});

describe("CrlfNormalizer", () => {
  it("turns bare LF into CRLF, also when the CR ended the previous chunk", () => {
    const n = new CrlfNormalizer();
    const out = ["a\nb", "\r", "\nc\r\n", "\n", "d"].map((c) => n.push(Buffer.from(c)).toString());
    expect(out.join("")).toBe("a\r\nb\r\nc\r\n\r\nd");
    expect(out[2]).toBe("\nc\r\n"); // the LF after a chunk-ending CR is left alone
  });

  it("hands back the same buffer when there is nothing to change", () => {
    const chunk = Buffer.from("a\r\nb\r\n");
    expect(new CrlfNormalizer().push(chunk)).toBe(chunk);
  });
});
