import { describe, expect, it } from 'vitest';
import { brokerColumns, formatCpuRange, formatCpuTable, formatMetricsTable, formatNotes, loaderSaturated, median, metric, missingMetrics, ratio, requiredMetricNames, round } from '../../bench/bench-report.ts';
import { gaugeMs } from '../../bench/event-loop-scrape.ts';
import { launchPrefix } from '../../bench/broker-under-test.ts';

// The arithmetic behind bench/results.json: no broker, no sockets, no timing.

describe('median', () => {
  it.each([
    [[3], 3],
    [[5, 1, 3], 3],
    [[4, 1, 3, 2], 2.5],
    [[null, 7, undefined, Number.NaN, 1], 4],
    [[], null],
    [[null, null], null],
  ])('median(%j) = %j', (values, expected) => {
    expect(median(values)).toBe(expected);
  });
});

describe('ratio and rounding', () => {
  it('divides a broker by the reference', () => {
    expect(ratio(300, 600)).toBe(0.5);
    expect(ratio(1234, 1000)).toBe(1.23);
  });
  it('is null when a side has no figure or the reference is zero', () => {
    expect(ratio(1, null)).toBeNull();
    expect(ratio(null, 1)).toBeNull();
    expect(ratio(0, 0)).toBeNull();
  });
  it.each([
    [123456.7, 123457],
    [1234.5, 1235],
    [12.345, 12.3],
    [0.012345, 0.0123],
    [0, 0],
    [-2.468, -2.47],
  ])('round(%d) keeps three significant digits, at least integer precision: %d', (value, expected) => {
    expect(round(value)).toBe(expected);
  });
});

describe('metric', () => {
  it('reports medians per broker, each ratio to mosquitto and fleetgate ÷ aedes on the same runtime', () => {
    const m = metric(
      'mtls_connect_full_per_s',
      'connections/s',
      {
        mosquitto: { runs: [500, 600, 400], generatorCores: [0.5, 0.6, 0.5], brokerCores: [0.9, 0.95, 0.9] },
        'fleetgate-node24': { runs: [300, 250, 350], generatorCores: [0.3, 0.3, 0.3] },
        'aedes-node24': { runs: [400, 400, 400] },
        'fleetgate-node20': { runs: [200, null, 200] },
      },
      { note: 'n' },
    );
    expect(m).toMatchObject({
      name: 'mtls_connect_full_per_s',
      ratios: { 'fleetgate-node24': 0.6, 'aedes-node24': 0.8, 'fleetgate-node20': 0.4 },
      versusAedes: { 'fleetgate-node24/aedes-node24': 0.75 },
      generatorBound: false,
      detail: { note: 'n' },
    });
    expect(m.brokers.mosquitto).toEqual({ median: 500, runs: [500, 600, 400], generatorCores: [0.5, 0.6, 0.5], brokerCores: [0.9, 0.95, 0.9] });
    expect(m.brokers['fleetgate-node20']).toMatchObject({ median: 200, runs: [200, null, 200], generatorCores: [null, null, null] });
    expect(m.ratioNullReason).toBeUndefined();
  });
  it('gives no ratio when the generator was above 90 % of its core in any run, and says why', () => {
    const m = metric('qos0_msgs_per_s', 'messages/s', { mosquitto: { runs: [9, 10], generatorCores: [0.95, 0.8] }, 'fleetgate-node24': { runs: [5, 5], generatorCores: [0.2, 0.2] }, 'aedes-node24': { runs: [6, 6] } });
    expect(m.generatorBound).toBe(true);
    expect(m.ratios).toEqual({ 'fleetgate-node24': null, 'aedes-node24': null });
    expect(m.versusAedes).toEqual({ 'fleetgate-node24/aedes-node24': null });
    expect(m.ratioNullReason).toMatch(/generator-bound.*mosquitto/);
    expect(m.brokers.mosquitto?.median).toBe(9.5);
  });
  it('has no ratios for fleetgate-only figures', () => {
    expect(metric('policy_check_ns', 'ns', { 'fleetgate-node20': { runs: [900, 1100] } })).toMatchObject({ brokers: { 'fleetgate-node20': { median: 1000 } }, ratios: {}, versusAedes: {}, generatorBound: false });
  });
  it('is null on a side whose runs all failed', () => {
    expect(metric('reconnect_storm_s', 's', { mosquitto: { runs: [2] }, 'fleetgate-node24': { runs: [null] } })).toMatchObject({ brokers: { 'fleetgate-node24': { median: null }, mosquitto: { median: 2 } }, ratios: { 'fleetgate-node24': null } });
  });
});

describe('the results document', () => {
  it('requires the names the issue lists', () => {
    expect(requiredMetricNames).toEqual(
      expect.arrayContaining(['mtls_connect_full_per_s', 'mtls_connect_resumed_per_s', 'qos0_msgs_per_s', 'qos1_msgs_per_s', 'latency_p99_ms', 'rss_per_idle_conn_kib', 'reconnect_storm_s', 'enroll_per_s', 'revoke_to_disconnect_p99_ms', 'policy_check_ns']),
    );
    const only = (name: string) => metric(name, 'x', { 'fleetgate-node24': { runs: [1] } });
    expect(missingMetrics({ metrics: [only('enroll_per_s')] })).toEqual(requiredMetricNames.filter((name) => name !== 'enroll_per_s'));
    expect(missingMetrics({ metrics: requiredMetricNames.map(only) })).toEqual([]);
  });
  it('prints a column per broker with its ratio to mosquitto, fleetgate ÷ aedes, and dashes for missing figures', () => {
    const metrics = [
      metric('mtls_connect_full_per_s', 'connections/s', { mosquitto: { runs: [500] }, 'fleetgate-node24': { runs: [300] }, 'aedes-node24': { runs: [400] } }),
      metric('qos0_msgs_per_s', 'messages/s', { mosquitto: { runs: [900], generatorCores: [0.99] }, 'fleetgate-node24': { runs: [100] }, 'aedes-node24': { runs: [null] } }, { note: 'n' }),
      metric('enroll_per_s', 'enrollments/s', { 'fleetgate-node24': { runs: [53] } }, { note: 'fleetgate only' }),
    ];
    expect(brokerColumns(metrics)).toEqual(['mosquitto', 'fleetgate-node24', 'aedes-node24']);
    const lines = formatMetricsTable(metrics).split('\n');
    expect(lines[0]).toMatch(/^metric\s+unit\s+mosquitto\s+fleetgate-node24\s+aedes-node24\s+fleetgate ÷ aedes \(node24\)$/);
    expect(lines[1]).toMatch(/^mtls_connect_full_per_s\s+connections\/s\s+500\s+300 \(0\.6×\)\s+400 \(0\.8×\)\s+0\.75×$/);
    expect(lines[2]).toMatch(/^qos0_msgs_per_s\s+messages\/s\s+900\s+100 \(gen-bound\)\s+- \(gen-bound\)\s+gen-bound$/);
    expect(lines[3]).toMatch(/^enroll_per_s\s+enrollments\/s\s+53$/);
    expect(formatNotes(metrics).split('\n')).toEqual([
      'qos0_msgs_per_s: generator-bound: the load generator was above 90 % of its core in runs against mosquitto; n',
      'enroll_per_s: fleetgate only',
    ]);
  });
  it('gives metrics that share a note one line', () => {
    const same = (name: string) => metric(name, 'ms', { mosquitto: { runs: [1] } }, { note: 'QoS 1 at 1000 msg/s' });
    expect(formatNotes([same('latency_p50_ms'), same('latency_p99_ms')])).toBe('latency_p50_ms, latency_p99_ms: QoS 1 at 1000 msg/s');
  });
  it('prints the generator and broker CPU per broker for the metrics that have them, one row for metrics of the same runs', () => {
    const cpu = { mosquitto: { runs: [1, 1], generatorCores: [0.93, 0.95], brokerCores: [0.5, 0.5] }, 'fleetgate-node24': { runs: [1], generatorCores: [0.2], brokerCores: [1] } };
    const lines = formatCpuTable([
      metric('latency_p50_ms', 'ms', cpu),
      metric('latency_p99_ms', 'ms', cpu),
      metric('latency_eventloop_max_ms', 'ms', { 'fleetgate-node24': cpu['fleetgate-node24'] }),
      metric('qos1_msgs_per_s', 'messages/s', { ...cpu, mosquitto: { runs: [1], generatorCores: [0.5], brokerCores: [0.5] } }),
      metric('enroll_per_s', 'enrollments/s', { 'fleetgate-node24': { runs: [53] } }),
    ]).split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(/^latency_p50_ms \(\+2 more, same runs\)\s+93–95% · 50%\s+20% · 100%$/);
    expect(lines[2]).toMatch(/^qos1_msgs_per_s\s+50% · 50%\s+20% · 100%$/);
  });
  it.each([
    [[0.54, 0.57], '54–57%'],
    [[0.9], '90%'],
    [[null, 0.2], '20%'],
    [[], '-'],
  ])('CPU %j reads %s', (cores, expected) => {
    expect(formatCpuRange(cores)).toBe(expected);
  });
  it("reads fleetgate's event-loop gauges from the Prometheus text, in ms", () => {
    const text = '# HELP fleetgate_nodejs_eventloop_lag_max_seconds x\n# TYPE fleetgate_nodejs_eventloop_lag_max_seconds gauge\nfleetgate_nodejs_eventloop_lag_max_seconds 0.012345\nfleetgate_nodejs_eventloop_lag_p99_seconds{a="b"} 0.0101\n';
    expect(gaugeMs(text, 'fleetgate_nodejs_eventloop_lag_max_seconds')).toBe(12.35);
    expect(gaugeMs(text, 'fleetgate_nodejs_eventloop_lag_p99_seconds')).toBe(10.1);
    expect(() => gaugeMs(text, 'fleetgate_nodejs_eventloop_lag_min_seconds')).toThrow(/not in the metrics/);
  });
});

describe('loader saturation and process launch', () => {
  it('flags a loader above 90 % of its cores', () => {
    expect(loaderSaturated(0.95, 1)).toBe(true);
    expect(loaderSaturated(0.5, 1)).toBe(false);
    expect(loaderSaturated(1.5, 1, 2)).toBe(false);
    expect(loaderSaturated(1, 0)).toBe(false);
  });
  it('pins with taskset and raises the file limit, then execs the command with its arguments untouched', () => {
    expect(launchPrefix({})).toEqual([]);
    expect(launchPrefix({ cpus: '0' })).toEqual(['taskset', '-c', '0']);
    const prefix = launchPrefix({ cpus: '1', openFiles: 65_536 });
    expect(prefix.slice(0, 5)).toEqual(['taskset', '-c', '1', 'bash', '-c']);
    expect(prefix[5]).toContain('ulimit -n 65536');
    expect(prefix[5]).toMatch(/exec "\$0" "\$@"$/);
  });
});
