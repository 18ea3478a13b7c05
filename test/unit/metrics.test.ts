import { Metrics } from '@aws-lambda-powertools/metrics';
import type { EmfOutput } from '@aws-lambda-powertools/metrics/types';
import { describe, expect, it } from 'vitest';
import { AggregatedMetrics } from '../../shared/adapters/powertools-metrics.ts';

/** Powertools' own Metrics, keeping each EMF record it would print. */
class RecordedMetrics extends Metrics {
  readonly records: EmfOutput[] = [];
  override publishStoredMetrics(): this {
    this.records.push(this.serializeMetrics());
    this.clearMetrics();
    return this;
  }
}

const setup = () => {
  let now = 1_000_000;
  const metrics = new RecordedMetrics({ namespace: 'TokenVendor', serviceName: 'token-vendor' });
  const sink = new AggregatedMetrics(metrics, { now: () => now, intervalMs: 60_000 });
  return { metrics, sink, advance: (ms: number) => (now += ms) };
};

describe('Class: AggregatedMetrics', () => {
  it('publishes one record per interval with the sums of every count, not one per invocation', () => {
    // Prepare
    const { metrics, sink, advance } = setup();

    // Act: a thousand vends over 59 s, each followed by the handler's publication attempt.
    for (let vend = 0; vend < 1000; vend += 1) {
      sink.count(vend % 4 === 0 ? 'TableHits' : 'MemoryHits');
      sink.publish();
      advance(59);
    }
    const beforeInterval = metrics.records.length;
    advance(1_000);
    sink.publish();

    // Assess
    expect(beforeInterval).toBe(0);
    expect(metrics.records).toHaveLength(1);
    expect(metrics.records[0]).toMatchObject({ MemoryHits: 750, TableHits: 250, service: 'token-vendor' });
  });

  it('writes nothing when nothing was recorded, even when due', () => {
    // Prepare
    const { metrics, sink, advance } = setup();

    // Act
    advance(120_000);
    sink.publish();
    sink.publish(true);

    // Assess
    expect(metrics.records).toEqual([]);
  });

  it('keeps a sample of at most 99 latencies per record, drawn from all of them', () => {
    // Prepare
    const { metrics, sink } = setup();

    // Act
    for (let fetch = 0; fetch < 5_000; fetch += 1) sink.milliseconds('TokenFetchLatency', fetch);
    sink.count('TokenFetches', 5_000);
    sink.publish(true);

    // Assess
    expect(metrics.records).toHaveLength(1);
    const sample = metrics.records[0]?.TokenFetchLatency as unknown as number[];
    expect(sample).toHaveLength(99);
    // Uniform over 0…4999: a sample of 99 with none beyond the first 1000 would be a biased reservoir.
    expect(sample.some((value) => value >= 1000)).toBe(true);
    expect(metrics.records[0]).toMatchObject({ TokenFetches: 5_000 });
  });

  it('starts the next interval afresh after publishing', () => {
    // Prepare
    const { metrics, sink, advance } = setup();
    sink.count('TokenFetchFailures', 3);
    sink.publish(true);

    // Act
    sink.count('TokenFetchFailures');
    advance(60_000);
    sink.publish();

    // Assess
    expect(metrics.records.map((record) => record.TokenFetchFailures)).toEqual([3, 1]);
  });
});
