import { describe, expect, it } from "vitest";
import { SocketSpecError, formatSocketSpec, parseSocketSpec } from "../../src/milter/socket-spec.ts";

describe("parseSocketSpec", () => {
  it.each([
    ["inet:8891@127.0.0.1", { kind: "tcp", host: "127.0.0.1", port: 8891 }],
    ["inet:8891@localhost", { kind: "tcp", host: "localhost", port: 8891 }],
    ["inet:8891", { kind: "tcp", host: "0.0.0.0", port: 8891 }],
    ["inet6:8891@[::1]", { kind: "tcp", host: "::1", port: 8891 }],
    ["inet6:8891@::1", { kind: "tcp", host: "::1", port: 8891 }],
    ["local:/run/authmilter/authmilter.sock", { kind: "unix", path: "/run/authmilter/authmilter.sock" }],
    ["unix:/var/spool/postfix/authmilter/sock", { kind: "unix", path: "/var/spool/postfix/authmilter/sock" }],
    ["/run/a.sock", { kind: "unix", path: "/run/a.sock" }],
  ])("reads opendkim's %s", (spec, expected) => {
    expect(parseSocketSpec(spec)).toEqual(expected);
  });

  it.each(["inet:http@127.0.0.1", "inet:70000@127.0.0.1", "inet:8891@", "local:relative.sock", "tcp:8891", "8891"])(
    "rejects %s with the accepted forms",
    (spec) => {
      expect(() => parseSocketSpec(spec)).toThrow(SocketSpecError);
    },
  );

  it("formats what it parses", () => {
    for (const spec of ["inet:8891@127.0.0.1", "inet6:8891@[::1]", "local:/run/a.sock"]) {
      expect(formatSocketSpec(parseSocketSpec(spec))).toBe(spec);
    }
  });
});
