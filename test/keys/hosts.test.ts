import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { TableError } from "../../src/keys/errors.ts";
import { DEFAULT_INTERNAL_HOSTS, hostListFromValues, loadHostList, matchesHost, parseHostList, type HostList } from "../../src/keys/hosts.ts";
import { FIXTURES } from "./helpers.ts";

describe("host lists (InternalHosts, ExternalIgnoreList, PeerList)", () => {
  let list: HostList;
  beforeAll(async () => {
    list = await loadHostList(join(FIXTURES, "trusted.hosts"));
  });

  it("reads every entry of the fixture", () => {
    expect(list.size).toBe(13);
  });

  it("matches exact IPv4 and IPv6 addresses", () => {
    expect(matchesHost(list, "127.0.0.1")).toBe(true);
    expect(matchesHost(list, "127.0.0.2")).toBe(false);
    expect(matchesHost(list, "::1")).toBe(true);
    expect(matchesHost(list, "::2")).toBe(false);
  });

  it("prefers the more specific entry, as opendkim tries /32 down to /0", () => {
    expect(matchesHost(list, "10.1.2.3")).toBe(true);
    // "!10.99.0.0/16" is more specific than "10.0.0.0/8"
    expect(matchesHost(list, "10.99.5.5")).toBe(false);
    // the exact "10.99.1.1" is more specific than "!10.99.0.0/16"
    expect(matchesHost(list, "10.99.1.1")).toBe(true);
    expect(matchesHost(list, "11.0.0.1")).toBe(false);
  });

  it("reads CIDR blocks with and without square brackets", () => {
    expect(matchesHost(list, "192.168.1.77")).toBe(true);
    expect(matchesHost(list, "192.168.2.5")).toBe(true);
    expect(matchesHost(list, "192.168.3.1")).toBe(false);
  });

  it("matches IPv6 networks whatever the textual form of the address", () => {
    expect(matchesHost(list, "2001:db8::1")).toBe(true);
    expect(matchesHost(list, "2001:DB8:0:0::5")).toBe(true);
    expect(matchesHost(list, "2001:db8:bad::1")).toBe(false);
    expect(matchesHost(list, "2001:db9::1")).toBe(false);
  });

  it("tries an IPv4-mapped IPv6 address as IPv4 too", () => {
    expect(matchesHost(list, "::ffff:10.1.1.1")).toBe(true);
    expect(matchesHost(list, "::ffff:10.99.5.5")).toBe(false);
  });

  it("matches host names exactly and .domain entries for subdomains only", () => {
    const outside = "203.0.113.5";
    expect(matchesHost(list, outside, "mail.example.com")).toBe(true);
    expect(matchesHost(list, outside, "MAIL.Example.COM.")).toBe(true);
    expect(matchesHost(list, outside, "other.example.com")).toBe(false);
    expect(matchesHost(list, outside, "a.internal.example.com")).toBe(true);
    expect(matchesHost(list, outside, "internal.example.com")).toBe(false);
    expect(matchesHost(list, outside, "localhost")).toBe(true);
  });

  it("applies !name to that host only, and the nearest entry wins", () => {
    const outside = "203.0.113.5";
    expect(matchesHost(list, outside, "dmz.internal.example.com")).toBe(false);
    // "!dmz.internal.example.com" has no leading dot, so a host below it reaches ".internal.example.com".
    expect(matchesHost(list, outside, "x.dmz.internal.example.com")).toBe(true);
  });

  it("keeps opendkim's quirk: a negated name does not stop an address match", () => {
    expect(matchesHost(list, "10.5.5.5", "dmz.internal.example.com")).toBe(true);
  });

  it("ignores Postfix's [address] placeholder and non-addresses", () => {
    expect(matchesHost(list, "203.0.113.5", "[203.0.113.5]")).toBe(false);
    expect(matchesHost(list, "unknown", "unknown")).toBe(false);
    expect(matchesHost(list, undefined)).toBe(false);
    expect(matchesHost(list, "/var/run/socket")).toBe(false);
  });

  it("lets the negated form win when an entry is listed both ways, as opendkim tries !entry first", () => {
    const both = parseHostList("192.0.2.1\n!192.0.2.1\n10.0.0.0/8\n!10.0.0.0/8\n!relay.example\nrelay.example\n", "both");
    expect(matchesHost(both, "192.0.2.1")).toBe(false);
    expect(matchesHost(both, "10.1.1.1")).toBe(false);
    expect(matchesHost(both, undefined, "relay.example")).toBe(false);
  });

  it("covers everything with /0", () => {
    const all = parseHostList("0.0.0.0/0\n::/0\n!192.0.2.1\n", "all");
    expect(matchesHost(all, "198.51.100.1")).toBe(true);
    expect(matchesHost(all, "2001:db8::1")).toBe(true);
    expect(matchesHost(all, "192.0.2.1")).toBe(false);
  });

  it("builds opendkim's default InternalHosts from values", () => {
    const internal = hostListFromValues(DEFAULT_INTERNAL_HOSTS, "InternalHosts");
    expect(matchesHost(internal, "127.0.0.1")).toBe(true);
    expect(matchesHost(internal, "::1")).toBe(true);
    expect(matchesHost(internal, "10.0.0.1", "localhost")).toBe(false);
  });

  it("refuses entries that would silently never match, naming file and line", () => {
    const cases: [string, number, RegExp][] = [
      ["# c\n192.168.1.5/24\n", 2, /host bits set .* write 192\.168\.1\.0\/24/],
      ["2001:db8::1/32\n", 1, /write 2001:db8::\/32/],
      ["192.0.2/24\n", 1, /not a full dotted-quad/],
      ["10.0.0.0/33\n", 1, /prefix length must be 0\.\.32/],
      ["2001:db8::/129\n", 1, /prefix length must be 0\.\.128/],
      ["\n\n*.example.com\n", 3, /wildcards are not supported.*"\.example\.com"/],
      ["host1 host2\n", 1, /one entry per line/],
      ["bad_host!\n", 1, /neither an IP address/],
      ["!\n", 1, /empty entry/],
      ["300.1.1.1\n", 1, /not a full dotted-quad|not a valid IP/],
    ];
    for (const [text, line, reason] of cases) {
      let caught: unknown;
      try {
        parseHostList(text, "/etc/opendkim/TrustedHosts");
      } catch (err) {
        caught = err;
      }
      expect(caught, text).toBeInstanceOf(TableError);
      const e = caught as TableError;
      expect(e.file).toBe("/etc/opendkim/TrustedHosts");
      expect(e.line, text).toBe(line);
      expect(e.message, text).toMatch(reason);
    }
  });
});
