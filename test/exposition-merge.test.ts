import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mergeExpositions } from '../lib/exposition-merge.js';

describe('merging workers’ metrics', () => {
  it('adds counters, gauges and histogram parts; keeps the largest quantile, info and timestamp', () => {
    const worker = (requests: number, lag: number, start: number) => `# HELP veil_dns_requests_total Queries.
# TYPE veil_dns_requests_total counter
veil_dns_requests_total{server=".",proto="udp"} ${requests}
# HELP veil_dns_duration_seconds Time.
# TYPE veil_dns_duration_seconds histogram
veil_dns_duration_seconds_bucket{le="0.001"} ${requests}
veil_dns_duration_seconds_bucket{le="+Inf"} ${requests}
veil_dns_duration_seconds_sum 0.5
veil_dns_duration_seconds_count ${requests}
# TYPE veil_event_loop_lag_seconds summary
veil_event_loop_lag_seconds{quantile="0.99"} ${lag}
veil_event_loop_lag_seconds_sum 1
veil_event_loop_lag_seconds_count 10
# TYPE process_start_time_seconds gauge
process_start_time_seconds ${start}
# TYPE veil_build_info gauge
veil_build_info{version="0.1.0"} 1
`;
    const merged = mergeExpositions([worker(3, 0.002, 100), worker(4, 0.009, 105)]);
    assert.match(merged, /^veil_dns_requests_total\{server="\.",proto="udp"\} 7$/m);
    assert.match(merged, /^veil_dns_duration_seconds_bucket\{le="\+Inf"\} 7$/m);
    assert.match(merged, /^veil_dns_duration_seconds_sum 1$/m);
    assert.match(merged, /^veil_dns_duration_seconds_count 7$/m);
    assert.match(merged, /^veil_event_loop_lag_seconds\{quantile="0\.99"\} 0\.009$/m);
    assert.match(merged, /^veil_event_loop_lag_seconds_count 20$/m);
    assert.match(merged, /^process_start_time_seconds 105$/m);
    assert.match(merged, /^veil_build_info\{version="0\.1\.0"\} 1$/m);
    assert.equal(merged.match(/^# TYPE veil_dns_requests_total counter$/gm)!.length, 1);
    assert.equal(merged.match(/^# HELP veil_dns_requests_total Queries\.$/gm)!.length, 1);
    // Series stay with their family, after its HELP and TYPE.
    assert.ok(merged.indexOf('# TYPE veil_dns_duration_seconds histogram') < merged.indexOf('veil_dns_duration_seconds_sum'));
  });
});
