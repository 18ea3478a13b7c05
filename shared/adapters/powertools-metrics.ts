import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { DEFAULT_METRICS_NAMESPACE, SERVICE_NAME } from '../core/settings.ts';
import type { MetricName, MetricsSink } from '../ports/metrics.ts';

/** Reports nothing: for tests and tools that have no metrics to publish. */
export const noMetrics: MetricsSink = { count: () => undefined, milliseconds: () => undefined };

export function createMetrics(namespace = DEFAULT_METRICS_NAMESPACE, serviceName = SERVICE_NAME): Metrics {
  return new Metrics({ namespace, serviceName });
}

/**
 * CloudWatch takes at most 100 values of one metric in one EMF record, and Powertools publishes by itself when a
 * metric reaches 100 (our own publication after it would then find nothing): 99 stays below both.
 */
const MAX_SAMPLES = 99;

/**
 * Metrics summed in the container and published (one EMF record) at most once per interval, instead of once per
 * invocation: CloudWatch Logs ingestion is paid per record, and at thousands of vends a second a record per vend
 * costs more than everything else the vendor does. Counts are exact sums; latencies are a uniform sample of at most
 * 99 values per record (below CloudWatch's 100), enough for percentiles. What a container holds when it is shut down
 * is lost: at most one interval of its counts.
 */
export class AggregatedMetrics implements MetricsSink {
  readonly #metrics: Metrics;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #random: () => number;
  #counts = new Map<MetricName, number>();
  #latencies: number[] = [];
  #latencySeen = 0;
  #publishedAt: number;

  constructor(
    metrics: Metrics,
    options: { readonly intervalMs?: number; readonly now?: () => number; readonly random?: () => number } = {},
  ) {
    this.#metrics = metrics;
    this.#intervalMs = options.intervalMs ?? 60_000;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#publishedAt = this.#now();
  }

  count(name: MetricName, value = 1): void {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + value);
  }

  milliseconds(_name: 'TokenFetchLatency', value: number): void {
    // Reservoir sampling: every value has the same chance to be among the 100 published.
    this.#latencySeen += 1;
    if (this.#latencies.length < MAX_SAMPLES) this.#latencies.push(value);
    else {
      const slot = Math.floor(this.#random() * this.#latencySeen);
      if (slot < MAX_SAMPLES) this.#latencies[slot] = value;
    }
  }

  /** Publishes what was recorded once the interval has passed since the last publication, or at once with `force`. */
  publish(force = false): void {
    const now = this.#now();
    if (!force && now - this.#publishedAt < this.#intervalMs) return;
    // Nothing recorded, nothing written (Powertools would warn "No application metrics to publish").
    if (this.#counts.size === 0 && this.#latencies.length === 0) return;
    for (const [name, value] of this.#counts) this.#metrics.addMetric(name, MetricUnit.Count, value);
    for (const value of this.#latencies) this.#metrics.addMetric('TokenFetchLatency', MetricUnit.Milliseconds, value);
    this.#metrics.publishStoredMetrics();
    this.#counts = new Map();
    this.#latencies = [];
    this.#latencySeen = 0;
    this.#publishedAt = now;
  }
}
