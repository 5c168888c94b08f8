import { describe, expect, it } from "vitest";
import { FrameDecoder, FrameError, encodeFrame } from "../../src/milter/frame.ts";

const packets = [
  encodeFrame(0x4f, Buffer.from([0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff])),
  encodeFrame(0x44, Buffer.from("C{daemon_name}\0mx\0")),
  encodeFrame(0x41),
  encodeFrame(0x42, Buffer.alloc(70_000, 0x61)),
];
const stream = Buffer.concat(packets);

function frames(decoder: FrameDecoder, pieces: Buffer[]) {
  return pieces.flatMap((p) => decoder.push(p)).map((f) => ({ code: f.code, payload: Buffer.from(f.payload) }));
}

describe("FrameDecoder", () => {
  const whole = frames(new FrameDecoder(), [stream]);

  it("decodes several packets from one read", () => {
    expect(whole.map((f) => f.code)).toEqual([0x4f, 0x44, 0x41, 0x42]);
    expect(whole[3]!.payload.length).toBe(70_000);
    expect(whole[2]!.payload.length).toBe(0);
  });

  it("yields the same frames whichever byte a read ends on", () => {
    for (let split = 1; split < stream.length; split += split < 64 ? 1 : 997) {
      const got = frames(new FrameDecoder(), [stream.subarray(0, split), stream.subarray(split)]);
      expect(got, `split at ${split}`).toEqual(whole);
    }
  });

  it("yields the same frames when fed one byte at a time", () => {
    const small = Buffer.concat(packets.slice(0, 3));
    const decoder = new FrameDecoder();
    const got = frames(decoder, [...small].map((b) => Buffer.from([b])));
    expect(got).toEqual(whole.slice(0, 3));
    expect(decoder.buffered).toBe(0);
  });

  it("rejects a zero length", () => {
    expect(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 0, 0x41]))).toThrow(FrameError);
  });

  it("rejects a length over the cap before the payload arrives", () => {
    const decoder = new FrameDecoder(1024);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(1026, 0);
    head[4] = 0x42;
    expect(() => decoder.push(head)).toThrow(/exceeds the 1024-byte limit/);
  });

  it("accepts a payload of exactly the cap", () => {
    const decoder = new FrameDecoder(1024);
    const got = decoder.push(encodeFrame(0x42, Buffer.alloc(1024)));
    expect(got).toHaveLength(1);
  });

  it("keeps a partial packet until it is whole", () => {
    const decoder = new FrameDecoder();
    expect(decoder.push(stream.subarray(0, 3))).toEqual([]);
    expect(decoder.buffered).toBe(3);
  });
});
