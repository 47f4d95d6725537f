/**
 * Prometheus metrics (prom-client), on a registry per gateway instance so that
 * tests can run several. Labels are route classes and status codes only —
 * never paths or query strings (UIDs and PatientName live there).
 */
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class GatewayMetrics {
  readonly registry: Registry;
  private readonly duration: Histogram<'route' | 'method' | 'status'>;
  private readonly upstreamErrors: Counter<'kind'>;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    this.registry = new Registry();
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'cbmir_gateway_' });
    this.duration = new Histogram({
      name: 'cbmir_gateway_http_request_duration_seconds',
      help: 'Gateway request duration by route class, method and status (the _count series counts requests)',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [this.registry],
    });
    this.upstreamErrors = new Counter({
      name: 'cbmir_gateway_upstream_errors_total',
      help: 'PACS failures seen by the gateway: unreachable, timeout (head or mid-body), body (stream error)',
      labelNames: ['kind'],
      registers: [this.registry],
    });
  }

  observeRequest(route: string, method: string, status: number, seconds: number): void {
    this.duration.observe({ route, method, status: String(status) }, seconds);
  }

  upstreamError(kind: string): void {
    this.upstreamErrors.inc({ kind });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
