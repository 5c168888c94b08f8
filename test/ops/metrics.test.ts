import { describe, expect, it } from "vitest";
import { startMonitoring } from "../../src/ops/http.ts";
import { Counter, Histogram, Observed, Registry } from "../../src/ops/metrics.ts";

describe("Registry", () => {
  it("renders counters, histograms and observed values in Prometheus text format", () => {
    const r = new Registry();
    const c = r.add(new Counter("t_results_total", "results"));
    c.inc({ method: "dkim", result: "pass" });
    c.inc({ method: "dkim", result: "pass" });
    c.inc({ method: "spf", result: 'we"ird' });
    const h = r.add(new Histogram("t_seconds", "latency", [0.1, 1]));
    h.observe(0.05);
    h.observe(0.5);
    h.observe(5);
    r.add(new Observed("t_open", "open", () => 7));
    expect(r.render()).toBe(
      [
        "# HELP t_results_total results",
        "# TYPE t_results_total counter",
        't_results_total{method="dkim",result="pass"} 2',
        't_results_total{method="spf",result="we\\"ird"} 1',
        "# HELP t_seconds latency",
        "# TYPE t_seconds histogram",
        't_seconds_bucket{le="0.1"} 1',
        't_seconds_bucket{le="1"} 2',
        't_seconds_bucket{le="+Inf"} 3',
        "t_seconds_sum 5.55",
        "t_seconds_count 3",
        "# HELP t_open open",
        "# TYPE t_open gauge",
        "t_open 7",
        "",
      ].join("\n"),
    );
  });
});

describe("startMonitoring", () => {
  it("serves /metrics and /healthz over HTTP, and 503 when not serving", async () => {
    const r = new Registry();
    r.add(new Counter("t_x_total", "x")).inc();
    let healthy = true;
    const m = await startMonitoring("127.0.0.1:0", async () => r.render(), () => healthy);
    try {
      const metrics = await fetch(`http://${m.address}/metrics`);
      expect(metrics.headers.get("content-type")).toContain("text/plain; version=0.0.4");
      expect(await metrics.text()).toContain("t_x_total 1");
      expect((await fetch(`http://${m.address}/healthz`)).status).toBe(200);
      healthy = false;
      expect((await fetch(`http://${m.address}/healthz`)).status).toBe(503);
      expect((await fetch(`http://${m.address}/other`)).status).toBe(404);
    } finally {
      await m.close();
    }
  });

  it("refuses a listen address it cannot read", async () => {
    await expect(startMonitoring("9891", async () => "", () => true)).rejects.toThrow(/host:port/);
  });
});
