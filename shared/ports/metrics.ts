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
  /** A vend found its token due and started (or handed to the refresher) one refresh ahead. */
  | 'RefreshesAhead'
  | 'ScheduledRefreshes'
  | 'ScheduledRunFailures'
  | 'ConnectorsFailing'
  | 'ConnectorsNeedingReauthorization'
  | 'HealthStateChanges';
