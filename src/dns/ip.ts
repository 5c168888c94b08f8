// Address text <-> bytes for A and AAAA rdata. node:net can validate but not convert.
import { isIPv4, isIPv6 } from "node:net";

export function ipv4ToBytes(text: string): Uint8Array {
  if (!isIPv4(text)) throw new TypeError(`not an IPv4 address: ${text}`);
  return Uint8Array.from(text.split(".").map(Number));
}

export function bytesToIpv4(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 4)).join(".");
}

export function ipv6ToBytes(text: string): Uint8Array {
  if (!isIPv6(text)) throw new TypeError(`not an IPv6 address: ${text}`);
  const out = new Uint8Array(16);
  let tail = text;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let v4bytes: Uint8Array | undefined;
  if (v4?.[1]) {
    v4bytes = ipv4ToBytes(v4[1]);
    tail = text.slice(0, -v4[1].length) + "0:0";
  }
  const halves = tail.split("::");
  const head = halves[0] ? halves[0].split(":") : [];
  const rest = halves.length > 1 && halves[1] ? halves[1].split(":") : [];
  const fill = 8 - head.length - rest.length;
  const groups = [...head, ...Array<string>(halves.length > 1 ? fill : 0).fill("0"), ...rest];
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  if (v4bytes) out.set(v4bytes, 12);
  return out;
}

/**
 * RFC 5952 text, like inet_ntop (and so node:dns): lower case, the longest run of two or
 * more zero groups as "::", and the IPv4-mapped form written as ::ffff:a.b.c.d.
 */
export function bytesToIpv6(bytes: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `::ffff:${bytesToIpv4(bytes.subarray(12, 16))}`;
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}
