import { backendPolicy, compilePolicy, decideInScope, defaultDevicePolicy, type SessionIdentity } from '../core/index.ts';

/**
 * What the broker pays per ACL check, in process: `decideInScope` (topic validation, the identity's fixed
 * scope, then the compiled policy) as called for every PUBLISH a device sends and every message delivered
 * to a service. The mix is the throughput scenario's: a device publishing on its own telemetry topic, and
 * the `backend` service receiving it.
 */
export function measurePolicyCheckNs(iterations: number): { nsPerCheck: number; checks: number } {
  const device: SessionIdentity = { kind: 'device', id: 'bench-00042', policy: compilePolicy(defaultDevicePolicy, { id: 'bench-00042', template: 'default', attributes: {} }) };
  const service: SessionIdentity = { kind: 'device', id: 'bench-subscriber', policy: compilePolicy(backendPolicy, { id: 'bench-subscriber', template: 'default', attributes: {} }) };
  const topic = 'devices/bench-00042/telemetry';
  let allowed = 0;
  const round = (count: number) => {
    for (let i = 0; i < count; i++) {
      if (decideInScope(device, 'publish', topic).allowed) allowed++;
      if (decideInScope(service, 'receive', topic).allowed) allowed++;
    }
  };
  round(Math.min(50_000, iterations)); // JIT warm-up
  allowed = 0;
  const started = process.hrtime.bigint();
  round(iterations);
  const elapsedNs = Number(process.hrtime.bigint() - started);
  // A check that was refused would mean the benchmark measures the wrong path.
  if (allowed !== 2 * iterations) throw new Error(`policy check refused ${2 * iterations - allowed} of ${2 * iterations} checks`);
  return { nsPerCheck: elapsedNs / (2 * iterations), checks: 2 * iterations };
}
