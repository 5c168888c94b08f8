// Log lines per finding, worded as opendkim and opendmarc write them, so that admins' greps
// and fail2ban filters keep working: "DKIM verification successful", "SPF(mailfrom): ...".

import type { Verification } from "./verify.ts";

export interface LogLine {
  readonly text: string;
  readonly fields: Record<string, unknown>;
}

export function describeVerification(v: Verification): LogLine[] {
  const lines: LogLine[] = [];
  const signatures = v.findings.dkim;
  for (const d of signatures) {
    const fields = { method: "dkim", result: d.result, domain: d.domain, selector: d.selector };
    if (d.result === "none") lines.push({ text: "no signature data", fields });
    else if (d.result === "pass") lines.push({ text: `DKIM verification successful (d=${d.domain} s=${d.selector})`, fields });
    else lines.push({ text: `DKIM verification ${d.result} (d=${d.domain} s=${d.selector}): ${d.reason ?? d.result}`, fields });
  }
  for (const s of v.spfChecks) {
    lines.push({ text: `SPF(${s.identity}): ${s.domain} ${s.result}`, fields: { method: "spf", identity: s.identity, domain: s.domain, result: s.result } });
  }
  if (v.spfSource === "trusted") lines.push({ text: "SPF for DMARC taken from a trusted Authentication-Results header", fields: { method: "spf" } });
  const dmarc = v.findings.dmarc;
  if (dmarc) {
    const policy = v.dmarcPolicy?.p ? ` (p=${v.dmarcPolicy.p})` : dmarc.reason ? ` (${dmarc.reason})` : "";
    lines.push({
      text: `DMARC ${dmarc.headerFrom ?? "-"} ${dmarc.result}${policy}`,
      fields: { method: "dmarc", domain: dmarc.headerFrom, result: dmarc.result, policy: v.dmarcPolicy?.p },
    });
  }
  if (v.findings.arc && v.findings.arc.result !== "none") {
    lines.push({ text: `ARC ${v.findings.arc.result}`, fields: { method: "arc", result: v.findings.arc.result } });
  }
  return lines;
}
