import type { BrokerUnderTest, Pinning } from './broker-under-test.ts';
import { freePort, launchPrefix } from './broker-under-test.ts';
import { startGatewayProcess, type GatewayProcess } from './gateway-process.ts';

/**
 * The fleetgate side of the suite, in one of its deployment shapes:
 *   serve    the all-in-one `fleetgate serve` (registry, CA, API and broker in one process)
 *   cluster  `fleetgate provisioning` + 2× `fleetgate broker` on Redis behind a TCP round-robin balancer in
 *            bench/ — not built yet: add a `case 'cluster'` that returns the same FleetgateUnderTest
 *            (port = the balancer's, pids = every broker process, restart = restart the brokers).
 */
export const fleetgateModes = ['serve', 'cluster'] as const;
export type FleetgateMode = (typeof fleetgateModes)[number];

export interface FleetgateUnderTest extends BrokerUnderTest {
  readonly name: 'fleetgate';
  readonly mode: FleetgateMode;
  /** Admin/enrollment API, https://127.0.0.1:PORT. */
  readonly apiUrl: string;
  readonly mqttUrl: string;
}

export interface FleetgateLaunch {
  readonly mode: FleetgateMode;
  /** A data directory whose PKI, token and registry already exist (bench/device-credentials.ts made them). */
  readonly dataDir: string;
  readonly pinning: Pinning;
  readonly env?: Record<string, string>;
}

export class FleetgateModeUnavailable extends Error {}

/** Throws FleetgateModeUnavailable for a mode that cannot be launched yet, before any set-up work. */
export function assertModeAvailable(mode: FleetgateMode): void {
  if (mode === 'cluster') {
    throw new FleetgateModeUnavailable(
      '--mode cluster is not available yet: it needs `fleetgate provisioning` + 2× `fleetgate broker` on Redis behind the bench/ TCP load balancer (issue 7). Use --mode serve.',
    );
  }
}

export async function startFleetgate(launch: FleetgateLaunch): Promise<FleetgateUnderTest> {
  assertModeAvailable(launch.mode);
  switch (launch.mode) {
    case 'serve':
      return startServe(launch);
    case 'cluster':
      throw new FleetgateModeUnavailable('unreachable: assertModeAvailable refuses cluster');
  }
}

async function startServe(launch: FleetgateLaunch): Promise<FleetgateUnderTest> {
  // Fixed ports so that a restart (reconnect storm) comes back at the address the devices retry.
  const mqttPort = await freePort();
  const apiPort = await freePort();
  const start = () =>
    startGatewayProcess({
      dataDir: launch.dataDir,
      mqttPort,
      apiPort,
      launchPrefix: launchPrefix(launch.pinning),
      // FLEETGATE_BENCH_CPU_PROFILE=DIR writes a V8 CPU profile of the gateway there (bench/profile-summary.ts reads it).
      ...(process.env.FLEETGATE_BENCH_CPU_PROFILE ? { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${process.env.FLEETGATE_BENCH_CPU_PROFILE}`] } : {}),
      env: {
        // The per-claim and API limiters protect against a leaked credential; they are not what is measured.
        FLEETGATE_ENROLL_RATE_PER_CLAIM: '1000000',
        FLEETGATE_API_RATE_LIMIT_PER_MINUTE: '1000000',
        // Per-device publish limits (flow control) would cap the throughput scenarios at limit × publishers:
        // raised, as Mosquitto has none configured. Queue limits and the connect rate keep their defaults.
        FLEETGATE_PUBLISH_RATE: '1000000',
        FLEETGATE_PUBLISH_BYTES_RATE: '1000000000',
        FLEETGATE_LOG_LEVEL: 'warn',
        ...launch.env,
      },
    });
  let stopping = false;
  const watch = (process_: GatewayProcess) => {
    process_.child.once('exit', (code, signal) => {
      if (!stopping) process.stderr.write(`fleetgate (pid ${process_.pid}) exited unexpectedly: code ${code}, signal ${signal}\n${process_.stderrTail()}\n`);
    });
    return process_;
  };
  let gateway: GatewayProcess = watch(await start());
  return {
    name: 'fleetgate',
    mode: 'serve',
    host: '127.0.0.1',
    port: mqttPort,
    get pid() {
      return gateway.pid;
    },
    pids: () => [gateway.pid],
    apiUrl: `https://127.0.0.1:${apiPort}`,
    mqttUrl: `mqtts://127.0.0.1:${mqttPort}`,
    async restart() {
      const started = performance.now();
      stopping = true;
      await gateway.stop();
      stopping = false;
      gateway = watch(await start());
      return { downMs: performance.now() - started };
    },
    async stop() {
      stopping = true;
      await gateway.stop();
    },
  };
}
