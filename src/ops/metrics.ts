// A small Prometheus registry: counters and histograms with labels, gauges read at scrape
// time, and the text exposition format (version 0.0.4). Enough for our handful of series.

type Labels = Readonly<Record<string, string>>;

// Runs on every observation (several per message): escaping is skipped when nothing needs it.
const NEEDS_ESCAPE = /[\\"\n]/;

function labelText(labels: Labels): string {
  let text = "";
  for (const k in labels) {
    const v = labels[k]!;
    const escaped = NEEDS_ESCAPE.test(v) ? v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n") : v;
    text += `${text === "" ? "{" : ","}${k}="${escaped}"`;
  }
  return text === "" ? "" : `${text}}`;
}

interface Series {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  render(): string[];
}

export class Counter implements Series {
  readonly type = "counter";
  readonly name: string;
  readonly help: string;
  readonly #values = new Map<string, number>();

  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }

  get(labels: Labels = {}): number {
    return this.#values.get(labelText(labels)) ?? 0;
  }

  render(): string[] {
    return [...this.#values].map(([labels, v]) => `${this.name}${labels} ${v}`);
  }
}

/** A value read at scrape time: a gauge, or a counter kept elsewhere (e.g. the DNS cache's). */
export class Observed implements Series {
  readonly type: "gauge" | "counter";
  readonly name: string;
  readonly help: string;
  readonly #read: () => number;

  constructor(name: string, help: string, read: () => number, type: "gauge" | "counter" = "gauge") {
    this.name = name;
    this.help = help;
    this.#read = read;
    this.type = type;
  }

  render(): string[] {
    return [`${this.name} ${this.#read()}`];
  }
}

export class Histogram implements Series {
  readonly type = "histogram";
  readonly name: string;
  readonly help: string;
  readonly #bounds: readonly number[];
  readonly #series = new Map<string, { counts: number[]; sum: number; count: number }>();

  constructor(name: string, help: string, bounds: readonly number[]) {
    this.name = name;
    this.help = help;
    this.#bounds = bounds;
  }

  observe(value: number, labels: Labels = {}): void {
    const key = labelText(labels);
    let s = this.#series.get(key);
    if (!s) {
      s = { counts: this.#bounds.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    for (let i = 0; i < this.#bounds.length; i++) if (value <= this.#bounds[i]!) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  render(): string[] {
    const out: string[] = [];
    for (const [key, s] of this.#series) {
      const inner = key === "" ? "" : key.slice(1, -1) + ",";
      this.#bounds.forEach((b, i) => out.push(`${this.name}_bucket{${inner}le="${b}"} ${s.counts[i]}`));
      out.push(`${this.name}_bucket{${inner}le="+Inf"} ${s.count}`, `${this.name}_sum${key} ${s.sum}`, `${this.name}_count${key} ${s.count}`);
    }
    return out;
  }
}

export class Registry {
  readonly #series: Series[] = [];

  add<T extends Series>(series: T): T {
    this.#series.push(series);
    return series;
  }

  render(): string {
    const lines: string[] = [];
    for (const s of this.#series) lines.push(`# HELP ${s.name} ${s.help}`, `# TYPE ${s.name} ${s.type}`, ...s.render());
    return `${lines.join("\n")}\n`;
  }
}

const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** What authmilter counts. One instance per process; absent when metrics are off. */
export class AuthMetrics {
  readonly registry = new Registry();
  readonly results = this.registry.add(new Counter("authmilter_results_total", "Verification results by method (dkim, spf, dmarc, arc) and result"));
  readonly signatures = this.registry.add(new Counter("authmilter_signatures_total", "DKIM signatures added, by algorithm"));
  readonly actions = this.registry.add(new Counter("authmilter_actions_total", "Final decisions on messages (continue, reject, tempfail, quarantine ...)"));
  readonly messages = this.registry.add(new Counter("authmilter_messages_total", "Messages seen, by client class (internal, authenticated, external)"));
  readonly messageSeconds = this.registry.add(new Histogram("authmilter_message_seconds", "Time from MAIL FROM to our end-of-message reply", SECONDS));
  readonly dnsSeconds = this.registry.add(new Histogram("authmilter_dns_lookup_seconds", "DNS lookups as mailauth sees them (cache hits included)", SECONDS));
}

/**
 * Several processes' expositions as one: samples with the same name and labels are added up
 * (counters, histogram buckets, connections, cache sizes all sum across cluster workers).
 */
export function sumExpositions(texts: readonly string[]): string {
  const comments: string[] = [];
  const seen = new Set<string>();
  const samples = new Map<string, number>();
  for (const text of texts) {
    for (const line of text.split("\n")) {
      if (line === "") continue;
      if (line.startsWith("#")) {
        if (!seen.has(line)) {
          seen.add(line);
          comments.push(line);
          samples.set(line, Number.NaN); // keeps each HELP/TYPE before its samples
        }
        continue;
      }
      const space = line.lastIndexOf(" ");
      const key = line.slice(0, space);
      samples.set(key, (samples.get(key) ?? 0) + Number(line.slice(space + 1)));
    }
  }
  const out: string[] = [];
  for (const [key, value] of samples) out.push(Number.isNaN(value) && key.startsWith("#") ? key : `${key} ${value}`);
  return `${out.join("\n")}\n`;
}
