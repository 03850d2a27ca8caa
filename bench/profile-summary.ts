import { readFileSync } from 'node:fs';

/** The parts of a V8 .cpuprofile (node --cpu-prof) this reads. */
interface CpuProfile {
  readonly nodes: readonly { id: number; callFrame: { functionName: string; url: string }; children?: number[] }[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/**
 * Where the gateway's main thread spent its time, by subsystem. Each sample is charged to the frame nearest
 * the top of its stack that belongs to a known subsystem, so a native call (better-sqlite3's `run`, a
 * WebCrypto entry point) counts for the JavaScript that made it. "(program)" is native work with no
 * JavaScript on the stack: on this server that is mostly OpenSSL handshakes and record crypto, driven
 * straight from libuv by Node's TLSWrap, plus socket reads and writes.
 */
const categories: readonly [string, (url: string, name: string) => boolean][] = [
  ['idle', (_url, name) => name === '(idle)'],
  ['garbage collection', (_url, name) => name === '(garbage collector)'],
  ['native outside JS (OpenSSL TLS, socket I/O)', (_url, name) => name === '(program)'],
  ['X.509/ASN.1 (@peculiar, asn1js, tsyringe)', (url) => /@peculiar|asn1js|pvtsutils|pvutils|tsyringe|reflect-metadata|pkijs/.test(url)],
  ['registry (better-sqlite3, SQL, audit)', (url) => /better-sqlite3|\/registry\//.test(url)],
  ['WebCrypto bindings (sign/verify/digest dispatch)', (url) => /node:internal\/crypto/.test(url)],
  ['TLS/net JavaScript (node:tls, node:net)', (url) => /node:_tls|node:tls|node:net|node:internal\/tls|node:internal\/stream_base/.test(url)],
  ['MQTT (aedes, mqtt-packet, mqemitter)', (url) => /aedes|mqtt-packet|mqemitter|qlobber|hyperid|retimer|fastfall|fastparallel|fastseries|reusify/.test(url)],
  ['logging (pino)', (url) => /pino|sonic-boom/.test(url)],
  ['HTTP API (fastify)', (url) => /fastify|avvio|find-my-way|light-my-request/.test(url)],
  ['fleetgate code (broker/, provisioning/, core/)', (url) => /\/(broker|provisioning|core|cli)\//.test(url)],
];
const otherJs = 'other JavaScript (Node internals, JSON, Buffer, tsx)';

export interface ProfileBreakdown {
  readonly sampledMs: number;
  /** Busy time (idle excluded) by category, ms and share of busy time. */
  readonly busy: readonly { readonly category: string; readonly ms: number; readonly share: number }[];
  /**
   * "(idle)" is time the isolate was parked in the event loop's poll phase, and with no JavaScript on the
   * stack that includes native callbacks run from it, notably TLSWrap driving OpenSSL handshakes. Compare
   * with the main thread's CPU time from /proc to get the native share.
   */
  readonly idleMs: number;
  /** The heaviest functions by self time, for the prose. */
  readonly topFunctions: readonly { readonly name: string; readonly ms: number }[];
}

/** `window` is [from, to] in microseconds of CLOCK_MONOTONIC, the clock of process.hrtime and of the profile. */
export function summarizeCpuProfile(path: string, window?: { fromUs: number; toUs: number }): ProfileBreakdown {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const categoryOf = new Map<number, string>();
  const categorize = (id: number): string => {
    const known = categoryOf.get(id);
    if (known !== undefined) return known;
    let category = otherJs;
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      const match = frame === undefined ? undefined : categories.find(([, test]) => test(frame.url, frame.functionName));
      if (match !== undefined) {
        category = match[0];
        break;
      }
    }
    categoryOf.set(id, category);
    return category;
  };

  const totals = new Map<string, number>();
  const selfTimes = new Map<string, number>();
  let time = profile.startTime;
  let sampled = 0;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    time += delta;
    if (window !== undefined && (time < window.fromUs || time > window.toUs)) return;
    // A sample's time is the gap to the next one; deltas are tiny and regular, so the current one will do.
    const ms = delta / 1000;
    sampled += ms;
    const category = categorize(id);
    totals.set(category, (totals.get(category) ?? 0) + ms);
    const frame = byId.get(id)?.callFrame;
    const name = `${frame?.functionName || '(anonymous)'} ${(frame?.url ?? '').replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(core|broker|provisioning|registry|cli)\//, '$1/')}`.trim();
    selfTimes.set(name, (selfTimes.get(name) ?? 0) + ms);
  });
  selfTimes.delete('(idle)');
  const topFunctions = [...selfTimes.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([name, ms]) => ({ name, ms: Math.round(ms) }));
  const idleMs = totals.get('idle') ?? 0;
  totals.delete('idle');
  const busyMs = sampled - idleMs;
  const busy = [...totals.entries()]
    .map(([category, ms]) => ({ category, ms: Math.round(ms), share: busyMs > 0 ? Math.round((ms / busyMs) * 1000) / 1000 : 0 }))
    .sort((a, b) => b.ms - a.ms);
  return { sampledMs: Math.round(sampled), busy, idleMs: Math.round(idleMs), topFunctions };
}
