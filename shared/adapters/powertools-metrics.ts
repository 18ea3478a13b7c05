import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';

/**
 * What the domain reports; the handlers back it with Powertools Metrics (CloudWatch EMF). Names are the ones the
 * CDK alarms and dashboards use.
 */
export interface MetricsSink {
  count(name: MetricName, value?: number): void;
  milliseconds(name: 'TokenFetchLatency', value: number): void;
}

export type MetricName =
  | 'MemoryHits'
  | 'TableHits'
  | 'TokenFetches'
  | 'TokenFetchFailures'
  | 'StillValidServed'
  | 'ScheduledRefreshes'
  | 'ScheduledRunFailures'
  | 'ConnectorsFailing'
  | 'ConnectorsNeedingReauthorization'
  | 'HealthStateChanges';

export const noMetrics: MetricsSink = { count: () => undefined, milliseconds: () => undefined };

export function createMetrics(namespace = 'TokenVendor', serviceName = 'token-vendor'): Metrics {
  return new Metrics({ namespace, serviceName });
}

export function powertoolsSink(metrics: Metrics): MetricsSink {
  return {
    count: (name, value = 1) => metrics.addMetric(name, MetricUnit.Count, value),
    milliseconds: (name, value) => metrics.addMetric(name, MetricUnit.Milliseconds, value),
  };
}
