import { describe, expect, it } from "vitest";
import { MacroStore } from "../../src/milter/macros.ts";

const stage = (c: string) => c.charCodeAt(0);
const m = (o: Record<string, string>) => new Map(Object.entries(o));

describe("MacroStore", () => {
  it("finds single-letter macros with and without braces", () => {
    const store = new MacroStore();
    store.set(stage("M"), m({ "{i}": "QID1", j: "mx" }));
    expect(store.get("i")).toBe("QID1");
    expect(store.get("{j}")).toBe("mx");
  });

  it("prefers the most recent stage", () => {
    const store = new MacroStore();
    store.set(stage("C"), m({ i: "old", "{daemon_name}": "smtpd" }));
    store.set(stage("E"), m({ i: "QID" }));
    expect(store.get("i")).toBe("QID");
    expect(store.get("{daemon_name}")).toBe("smtpd");
  });

  it("clears later stages when an earlier one is set again", () => {
    const store = new MacroStore();
    store.set(stage("M"), m({ "{mail_addr}": "a@x" }));
    store.set(stage("R"), m({ "{rcpt_addr}": "b@y" }));
    store.set(stage("H"), m({ "{tls_version}": "TLSv1.3" }));
    expect(store.get("{rcpt_addr}")).toBeUndefined();
    expect(store.get("{mail_addr}")).toBeUndefined();
    expect(store.get("{tls_version}")).toBe("TLSv1.3");
  });

  it("drops MAIL and later on a transaction reset but keeps the connection's", () => {
    const store = new MacroStore();
    store.set(stage("C"), m({ j: "mx" }));
    store.set(stage("M"), m({ "{auth_authen}": "alice" }));
    store.resetTransaction();
    expect(store.get("{auth_authen}")).toBeUndefined();
    expect(store.get("j")).toBe("mx");
  });

  it("shares the EOH scope between L and N, and the EOM scope between B and E", () => {
    const store = new MacroStore();
    store.set(stage("L"), m({ a: "1" }));
    store.set(stage("N"), m({ b: "2" }));
    expect(store.get("a")).toBeUndefined();
    store.set(stage("B"), m({ c: "3" }));
    store.set(stage("E"), m({ d: "4" }));
    expect(store.get("c")).toBeUndefined();
    expect(store.get("d")).toBe("4");
    expect(store.get("b")).toBe("2");
  });

  it("ignores unknown stage bytes", () => {
    const store = new MacroStore();
    store.set(stage("Z"), m({ i: "x" }));
    expect(store.get("i")).toBeUndefined();
  });

  it("keeps absent and empty apart", () => {
    const store = new MacroStore();
    store.set(stage("M"), m({ "{auth_authen}": "" }));
    expect(store.get("{auth_authen}")).toBe("");
    expect(store.get("{auth_type}")).toBeUndefined();
    expect(store.all()).toEqual(m({ "{auth_authen}": "" }));
  });
});
