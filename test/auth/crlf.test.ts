import { describe, expect, it } from "vitest";
import { CrlfNormalizer } from "../../src/auth/crlf.ts";

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
