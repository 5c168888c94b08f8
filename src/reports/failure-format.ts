// The authentication failure report message (RFC 6591, on ARF RFC 5965; RFC 7489 §7.3 adds
// Auth-Failure: dmarc and Identity-Alignment): multipart/report; report-type=feedback-report
// with a human-readable part, the message/feedback-report fields, and the original message's
// header section as text/rfc822-headers. The original body is never included.

import { wireForm, type HeaderField } from "../auth/header-field.ts";
import type { Disposition } from "../auth/results.ts";
import {
  assembleMessage,
  domainOf,
  foldHeader,
  formatDate,
  headerSafe,
  is7bit,
  multipartBody,
  newBoundary,
  newMessageId,
  quotedPrintable,
  textPart,
  type MimePart,
} from "./mailer.ts";

/** RFC 6591 §3.2 plus "dmarc" (RFC 7489 §7.3.1). */
export type AuthFailureType = "dmarc" | "signature" | "bodyhash" | "revoked" | "spf";

export interface AfrfMessage {
  /** From: (and the envelope sender, by the caller). */
  readonly from: string;
  /** To: the one report address. */
  readonly to: string;
  readonly subject: string;
  readonly date: Date;
  readonly messageId?: string;
  /** For the human-readable part. */
  readonly explanation: string;
  readonly userAgent: string;
  /** Our host name. */
  readonly reportingMta: string;
  readonly authFailure: AuthFailureType;
  readonly reportedDomain: string;
  /** Our Authentication-Results value for the message (folds as LF + tab). */
  readonly authenticationResults: string;
  /** Which mechanisms produced an aligned pass (RFC 7489 §7.3.1); absent: field left out. */
  readonly identityAlignment?: readonly ("dkim" | "spf")[];
  /** For the DKIM failure types (RFC 6591 §3.2: DKIM-Domain, -Identity, -Selector). */
  readonly dkim?: { readonly domain: string; readonly identity?: string; readonly selector?: string };
  /** The Postfix queue id, as Original-Envelope-Id. */
  readonly queueId?: string;
  /** MAIL FROM; "" for the null sender. */
  readonly sender: string;
  readonly sourceIp: string;
  readonly arrivalDate: Date;
  readonly disposition: Disposition;
  /** The original message's header fields, as the milter received them. */
  readonly headers: readonly HeaderField[];
}

/** RFC 6591 §3.1 Delivery-Result from what the policy did with the message. */
export function deliveryResult(disposition: Disposition): "delivered" | "spam" | "reject" {
  return disposition === "reject" ? "reject" : disposition === "quarantine" ? "spam" : "delivered";
}

/** The original header section is capped: a report must stay a report. */
export const MAX_HEADER_SECTION_BYTES = 64 * 1024;

function headerSection(fields: readonly HeaderField[]): { bytes: Buffer; omitted: number } {
  const parts: Buffer[] = [];
  let size = 0;
  let omitted = 0;
  for (const field of fields) {
    const wire = wireForm(field);
    if (size + wire.length > MAX_HEADER_SECTION_BYTES) {
      omitted++;
      continue;
    }
    parts.push(wire);
    size += wire.length;
  }
  return { bytes: Buffer.concat(parts), omitted };
}

/** A multi-line header value of ours (LF + tab folds) with CRLF folds, printable ASCII only. */
function foldedValue(value: string): string {
  return value
    .split(/\r?\n/)
    .map((line) => line.replace(/[^\x09\x20-\x7e]/g, "?"))
    .join("\r\n");
}

function field(name: string, value: string): string {
  return foldHeader(name, headerSafe(value));
}

export function buildAfrfMessage(m: AfrfMessage): Buffer {
  const report: string[] = [
    "Feedback-Type: auth-failure",
    field("User-Agent", m.userAgent),
    "Version: 1",
    ...(m.queueId ? [field("Original-Envelope-Id", m.queueId)] : []),
    field("Original-Mail-From", `<${m.sender}>`),
    `Arrival-Date: ${formatDate(m.arrivalDate)}`,
    field("Reporting-MTA", `dns; ${m.reportingMta}`),
    field("Source-IP", m.sourceIp),
    field("Reported-Domain", m.reportedDomain),
    `Authentication-Results: ${foldedValue(m.authenticationResults)}`,
    `Auth-Failure: ${m.authFailure}`,
    `Delivery-Result: ${deliveryResult(m.disposition)}`,
    ...(m.identityAlignment ? [`Identity-Alignment: ${m.identityAlignment.length === 0 ? "none" : m.identityAlignment.join(", ")}`] : []),
    ...(m.dkim
      ? [
          field("DKIM-Domain", m.dkim.domain),
          field("DKIM-Identity", m.dkim.identity ?? `@${m.dkim.domain}`),
          ...(m.dkim.selector ? [field("DKIM-Selector", m.dkim.selector)] : []),
        ]
      : []),
  ];
  const original = headerSection(m.headers);
  const plain = is7bit(original.bytes);
  const headersPart: MimePart = {
    headers: [
      `Content-Type: text/rfc822-headers${plain ? "" : "; charset=utf-8"}`,
      `Content-Transfer-Encoding: ${plain ? "7bit" : "quoted-printable"}`,
    ],
    body: plain ? original.bytes.toString("latin1") : quotedPrintable(original.bytes),
  };
  const note =
    original.omitted > 0 ? `\n${original.omitted} header field(s) were left out to keep the report under ${MAX_HEADER_SECTION_BYTES} bytes.\n` : "";
  const boundary = newBoundary();
  const body = multipartBody(boundary, [
    textPart(`${m.explanation}${note}`),
    { headers: ["Content-Type: message/feedback-report", "Content-Transfer-Encoding: 7bit"], body: `${report.join("\r\n")}\r\n` },
    headersPart,
  ]);
  const headers = [
    `From: ${m.from}`,
    `To: ${m.to}`,
    `Date: ${formatDate(m.date)}`,
    field("Subject", m.subject),
    `Message-ID: ${m.messageId ?? newMessageId(domainOf(m.from))}`,
    "MIME-Version: 1.0",
    "Auto-Submitted: auto-generated",
    `Content-Type: multipart/report; report-type=feedback-report;\r\n\tboundary="${boundary}"`,
  ];
  return assembleMessage(headers, body);
}
