import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { DEFAULT_METRICS_NAMESPACE, SERVICE_NAME } from '../core/settings.ts';
import type { MetricsSink } from '../ports/metrics.ts';

/** Reports nothing: for tests and tools that have no metrics to publish. */
export const noMetrics: MetricsSink = { count: () => undefined, milliseconds: () => undefined };

export function createMetrics(namespace = DEFAULT_METRICS_NAMESPACE, serviceName = SERVICE_NAME): Metrics {
  return new Metrics({ namespace, serviceName });
}

export function powertoolsSink(metrics: Metrics): MetricsSink {
  return {
    count: (name, value = 1) => metrics.addMetric(name, MetricUnit.Count, value),
    milliseconds: (name, value) => metrics.addMetric(name, MetricUnit.Milliseconds, value),
  };
}
