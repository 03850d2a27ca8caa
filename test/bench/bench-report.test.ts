import { describe, expect, it } from 'vitest';
import { formatCpuRange, formatMetricsTable, loaderSaturated, median, metric, missingMetrics, ratio, requiredMetricNames, round } from '../../bench/bench-report.ts';
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
  it('divides fleetgate by mosquitto', () => {
    expect(ratio(300, 600)).toBe(0.5);
    expect(ratio(1234, 1000)).toBe(1.23);
  });
  it('is null when a side has no figure or mosquitto is zero', () => {
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
  it('reports medians and their ratio, keeping the detail', () => {
    expect(metric('qos0_msgs_per_s', 'messages/s', [100, 300, 200], [100, 50], { note: 'n' })).toEqual({
      name: 'qos0_msgs_per_s',
      unit: 'messages/s',
      fleetgate: 200,
      mosquitto: 75,
      ratio: 2.67,
      detail: { note: 'n' },
    });
  });
  it('has mosquitto and ratio null for fleetgate-only figures', () => {
    expect(metric('policy_check_ns', 'ns', [900, 1100], null)).toMatchObject({ fleetgate: 1000, mosquitto: null, ratio: null });
  });
  it('is null on a side whose runs all failed', () => {
    expect(metric('reconnect_storm_s', 's', [null], [2])).toMatchObject({ fleetgate: null, mosquitto: 2, ratio: null });
  });
});

describe('the results document', () => {
  it('requires the names the issue lists', () => {
    expect(requiredMetricNames).toEqual(
      expect.arrayContaining(['mtls_connect_full_per_s', 'mtls_connect_resumed_per_s', 'qos0_msgs_per_s', 'qos1_msgs_per_s', 'latency_p99_ms', 'rss_per_idle_conn_kib', 'reconnect_storm_s', 'enroll_per_s', 'revoke_to_disconnect_p99_ms', 'policy_check_ns']),
    );
    expect(missingMetrics({ metrics: [metric('enroll_per_s', '/s', [1], null)] })).toEqual(requiredMetricNames.filter((name) => name !== 'enroll_per_s'));
    expect(missingMetrics({ metrics: requiredMetricNames.map((name) => metric(name, 'x', [1], null)) })).toEqual([]);
  });
  it('prints one row per metric with a dash for missing figures', () => {
    const table = formatMetricsTable([
      metric('enroll_per_s', 'enrollments/s', [53], null, { note: 'fleetgate only' }),
      metric('qos1_msgs_per_s', 'messages/s', [300], [100], { loaderCpu: '20% / 93%' }),
    ]);
    const lines = table.split('\n');
    expect(lines[0]).toMatch(/^metric\s+unit\s+fleetgate\s+mosquitto\s+ratio\s+loader cpu\s+note$/);
    expect(lines[1]).toMatch(/^enroll_per_s\s+enrollments\/s\s+53\s+-\s+-\s+-\s+fleetgate only$/);
    expect(lines[2]).toMatch(/^qos1_msgs_per_s\s+messages\/s\s+300\s+100\s+3×\s+20% \/ 93%$/);
  });
  it.each([
    [[0.54, 0.57], '54–57%'],
    [[0.9], '90%'],
    [[null, 0.2], '20%'],
    [[], '-'],
  ])('loader CPU %j reads %s', (cores, expected) => {
    expect(formatCpuRange(cores)).toBe(expected);
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
