// A deliberately small XML writer: reports only need elements and text, no attributes, no
// namespaces. Every text value comes from mail or DNS (domains, selectors, comments), so all of
// it goes through `escapeText`; element names are our own constants.

export interface XmlElement {
  readonly name: string;
  /** Text content, or child elements. */
  readonly content: string | readonly XmlElement[];
}

export function el(name: string, content: string | number | readonly XmlElement[]): XmlElement {
  return { name, content: typeof content === "number" ? String(content) : content };
}

/**
 * Characters XML 1.0 cannot carry at all, even escaped (NUL and the other C0 controls but tab,
 * LF and CR; lone surrogates; U+FFFE/U+FFFF). One of them from a hostile domain would make the
 * whole report unparsable for the receiver, so they become U+FFFD.
 */
const NOT_XML_CHAR = /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

export function escapeText(s: string): string {
  return s
    .replace(NOT_XML_CHAR, "\ufffd")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

/** The document with its declaration, two-space indentation, ending in a newline. */
export function serializeXml(root: XmlElement): string {
  const lines: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  write(root, 0, lines);
  return `${lines.join("\n")}\n`;
}

function write(node: XmlElement, depth: number, lines: string[]): void {
  const pad = "  ".repeat(depth);
  if (typeof node.content === "string") {
    lines.push(`${pad}<${node.name}>${escapeText(node.content)}</${node.name}>`);
    return;
  }
  lines.push(`${pad}<${node.name}>`);
  for (const child of node.content) write(child, depth + 1, lines);
  lines.push(`${pad}</${node.name}>`);
}
