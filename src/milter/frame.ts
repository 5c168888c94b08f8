// Packet framing: u32 big-endian length (command byte + payload), command byte, payload.
// A packet may be split at any byte and several may arrive in one read, so the decoder
// accumulates bytes and hands out whole frames only.

export interface Frame {
  readonly code: number;
  readonly payload: Buffer;
}

export class FrameError extends Error {
  override readonly name = "FrameError";
}

/** 1 MiB: above Postfix's largest header (header_size_limit 102 400) and macro packets. */
export const DEFAULT_MAX_PACKET_BYTES = 1024 * 1024;

export class FrameDecoder {
  readonly #maxPayload: number;
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(maxPacketBytes: number = DEFAULT_MAX_PACKET_BYTES) {
    this.#maxPayload = maxPacketBytes;
  }

  /** Bytes received but not yet part of a whole frame. */
  get buffered(): number {
    return this.#buffered;
  }

  /**
   * Adds bytes and returns every frame now complete. Throws FrameError on a zero or oversized
   * length: the stream cannot be resynchronised after that, so the caller closes the socket.
   */
  push(data: Buffer): Frame[] {
    if (data.length > 0) {
      this.#chunks.push(data);
      this.#buffered += data.length;
    }
    const frames: Frame[] = [];
    while (this.#buffered >= 4) {
      const head = this.#peek(4);
      const length = head.readUInt32BE(0);
      if (length === 0) throw new FrameError("packet length 0");
      if (length - 1 > this.#maxPayload) {
        throw new FrameError(`packet length ${length} exceeds the ${this.#maxPayload}-byte limit`);
      }
      if (this.#buffered < 4 + length) break;
      const packet = this.#take(4 + length);
      frames.push({ code: packet[4]!, payload: packet.subarray(5) });
    }
    return frames;
  }

  #peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0]!.subarray(0, n);
  }

  #take(n: number): Buffer {
    let first = this.#chunks[0]!;
    if (first.length < n) {
      first = Buffer.concat(this.#chunks);
      this.#chunks = [first];
    }
    const taken = first.subarray(0, n);
    if (first.length === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#buffered -= n;
    return taken;
  }
}

export function encodeFrame(code: number, payload: Buffer = EMPTY): Buffer {
  const packet = Buffer.allocUnsafe(5 + payload.length);
  packet.writeUInt32BE(1 + payload.length, 0);
  packet[4] = code;
  payload.copy(packet, 5);
  return packet;
}

const EMPTY = Buffer.alloc(0);
