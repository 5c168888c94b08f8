import { describe, expect, it } from "vitest";
import * as C from "../../src/milter/constants.ts";
import { NegotiationError, negotiate, type Requirements } from "../../src/milter/negotiate.ts";

const needs: Requirements = {
  requiredActions: C.SMFIF_ADDHDRS,
  optionalActions: C.SMFIF_CHGHDRS | C.SMFIF_QUARANTINE,
  macros: new Map([[C.SMFIM_CONNECT, ["j", "{daemon_name}"]]]),
};

describe("negotiate", () => {
  it("answers Postfix's offer with least privilege, no-reply steps and exact header bytes", () => {
    const { agreed, reply } = negotiate({ version: 6, actions: 0x1ff, protocol: 0x1fffff }, needs);
    expect(agreed.version).toBe(6);
    expect(agreed.actions).toBe(C.SMFIF_ADDHDRS | C.SMFIF_CHGHDRS | C.SMFIF_QUARANTINE | C.SMFIF_SETSYMLIST);
    expect(agreed.protocol & C.SMFIP_HDR_LEADSPC).not.toBe(0);
    expect(agreed.protocol & C.SMFIP_NR_HDR).not.toBe(0);
    expect(agreed.protocol & C.SMFIP_NR_BODY).not.toBe(0);
    expect(agreed.protocol & C.SMFIP_NOHDRS).toBe(0);
    expect(agreed.protocol & C.SMFIP_NOBODY).toBe(0);
    expect(agreed.protocol & C.SMFIP_SKIP).toBe(0);
    expect(reply).toMatchObject({ kind: "optneg", macros: needs.macros });
  });

  it("asks to answer DATA, so that Postfix's next flush does not wait 40 ms for a delayed ACK", () => {
    const { agreed } = negotiate({ version: 6, actions: 0x1ff, protocol: 0x1fffff }, needs);
    expect(agreed.protocol & (C.SMFIP_NODATA | C.SMFIP_NR_DATA)).toBe(0);
    expect(agreed.protocol & (C.SMFIP_NR_CONN | C.SMFIP_NR_MAIL | C.SMFIP_NR_RCPT | C.SMFIP_NR_EOH)).toBe(C.SMFIP_NR_CONN | C.SMFIP_NR_MAIL | C.SMFIP_NR_RCPT | C.SMFIP_NR_EOH);
  });

  it("never asks for a step the MTA did not offer", () => {
    const offered = C.SMFIP_NR_HDR | C.SMFIP_NOUNKNOWN;
    const { agreed } = negotiate({ version: 6, actions: 0x1ff, protocol: offered }, needs);
    expect(agreed.protocol).toBe(offered);
  });

  it("answers a version-2 MTA that offers nothing with its version-1 defaults and no macro lists", () => {
    const { agreed, reply } = negotiate({ version: 2, actions: 0, protocol: 0 }, needs);
    expect(agreed.version).toBe(2);
    expect(agreed.actions).toBe(C.SMFIF_ADDHDRS);
    expect(agreed.protocol & (C.SMFIP_NR_HDR | C.SMFIP_NR_BODY | C.SMFIP_HDR_LEADSPC)).toBe(0);
    expect(reply).toMatchObject({ macros: new Map() });
  });

  it("answers version 6 to a newer MTA", () => {
    expect(negotiate({ version: 7, actions: 0x1ff, protocol: 0x1fffff }, needs).agreed.version).toBe(6);
  });

  it("refuses an MTA that lacks a required action", () => {
    expect(() => negotiate({ version: 6, actions: C.SMFIF_CHGHDRS, protocol: 0x1fffff }, needs)).toThrow(NegotiationError);
  });

  it("goes without an optional action the MTA does not offer", () => {
    const { agreed } = negotiate({ version: 6, actions: C.SMFIF_ADDHDRS, protocol: 0x1fffff }, needs);
    expect(agreed.actions).toBe(C.SMFIF_ADDHDRS);
  });

  it("refuses protocol version 1", () => {
    expect(() => negotiate({ version: 1, actions: 0x1ff, protocol: 0 }, needs)).toThrow(/version 1/);
  });
});
