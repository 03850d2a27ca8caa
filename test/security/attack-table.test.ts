import { Aedes } from 'aedes';
import { existsSync, readFileSync } from 'node:fs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../core/index.ts';
import { resolveServeConfig } from '../../cli/config.ts';
import { createProvisioning } from '../../cli/provisioning-api.ts';
import {
  attackTable,
  capabilities,
  type Cell,
  clientPacketTypes,
  type MqttEntry,
  mqttEntryPoints,
  routeEntry,
  routeTable,
  rules,
} from './attack-table.ts';
import { type AttackerKit, fixtureEnv, refusalAudited, registrySnapshot, snapshotChanges, startAttackerKit } from './attacker-kit.ts';
import { isMqttEntry, type Observation, probeHttp, probeMqtt } from './cell-probes.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { subscribeGranted } from '../helpers/test-gateway.ts';

/**
 * Plays every cell of the attacker table (test/security/attack-table.ts) against one real gateway: real TLS
 * on 127.0.0.1, real certificates, raw MQTT 3.1.1 packets and HTTPS requests, the real SQLite registry.
 * A refusal must come with its code where one is pinned, an audit entry, and an unchanged registry; a
 * legitimate holder must succeed, so the table cannot pass by refusing everything.
 */
let kit: AttackerKit;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  kit = await startAttackerKit();
});
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await kit?.close();
});

/** Fastify's printRoutes() tree, flattened to "METHOD /url" (HEAD routes that shadow a GET are left out). */
function flattenRoutes(printed: string): string[] {
  const stack: string[] = [];
  const routes: string[] = [];
  for (const line of printed.split('\n')) {
    const match = /^((?:│ {3}| {4})*)(?:├── |└── )(\S+)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!match) continue;
    const depth = (match[1] ?? '').length / 4;
    stack.length = depth;
    stack.push(match[2] ?? '');
    for (const method of match[3]?.split(', ') ?? []) routes.push(`${method} ${stack.join('')}`);
  }
  const gets = new Set(routes.filter((r) => r.startsWith('GET ')).map((r) => r.slice(4)));
  return routes.filter((r) => !(r.startsWith('HEAD ') && gets.has(r.slice(5))));
}

describe('the table covers the whole gateway', () => {
  it('has one cell per capability and entry point, and a positive control for each entry point', () => {
    const seen = new Set<string>();
    for (const cell of attackTable) {
      const key = `${cell.entry} × ${cell.capability}`;
      expect(seen.has(key), `duplicate cell ${key}`).toBe(false);
      seen.add(key);
    }
    const entries = new Set(attackTable.map((cell) => cell.entry));
    for (const entry of entries) {
      const route = routeTable.find((r) => routeEntry(r) === entry);
      if (route?.access.kind === 'public') continue;
      for (const capability of ['legitimate', ...capabilities] as const) expect(seen.has(`${entry} × ${capability}`), `${entry} × ${capability}`).toBe(true);
    }
    // Not vacuous: every entry point has a cell where someone succeeds (or names the test that shows it).
    for (const entry of entries) expect(attackTable.some((cell) => cell.entry === entry && !('refused' in cell.expect)), entry).toBe(true);
    for (const cell of attackTable) expect(rules[cell.rule], cell.entry).toBeDefined();
  });

  it('lists every HTTP route of the built API, and nothing more', async () => {
    const config = resolveServeConfig({ dataDir: kit.gw.dataDirPath, host: '127.0.0.1', mqttPort: '0', apiPort: '0', hostname: 'localhost' }, { FLEETGATE_LOG_LEVEL: 'silent', ...fixtureEnv });
    const provisioning = createProvisioning(config, { dataDir: kit.gw.gateway.dataDir, events: kit.gw.gateway.events, clock: systemClock, log: pino({ level: 'silent' }) });
    const { app } = await provisioning.startApi({ list: async () => [] });
    try {
      const served = flattenRoutes(app.printRoutes()).sort();
      expect(served.length).toBeGreaterThan(30); // the parser read the tree
      expect(served).toEqual(routeTable.map(routeEntry).sort());
    } finally {
      await app.close();
    }
  });

  it('lists every aedes hook the gateway installs', async () => {
    const hooksOfTable = new Set<string>(Object.values(mqttEntryPoints).flatMap((entry) => [...entry.hooks]));
    hooksOfTable.delete('secureConnection'); // a TLS server event, not an aedes hook
    // A hook is a function the gateway's broker holds where a default broker holds aedes' own default.
    const [plain, other] = [await Aedes.createBroker(), await Aedes.createBroker()];
    try {
      const gateway = kit.gw.gateway.broker.aedes as unknown as Record<string, unknown>;
      const defaults = [plain, other] as unknown as Record<string, unknown>[];
      const keys = new Set([...Object.keys(gateway), ...Object.keys(defaults[0] ?? {})]);
      const installed = [...keys].filter((key) => {
        const perInstance = defaults[0]?.[key] !== defaults[1]?.[key]; // e.g. bound methods
        return !perInstance && typeof gateway[key] === 'function' && gateway[key] !== defaults[0]?.[key];
      });
      expect(installed.sort().join(' ')).toBe([...hooksOfTable].sort().join(' '));
    } finally {
      plain.close();
      other.close();
    }
  });

  it('names every MQTT 3.1.1 control packet a client may send (§2.2.1), each judged by an entry point or bound to its own session', () => {
    expect(Object.keys(clientPacketTypes).sort()).toEqual(['CONNECT', 'DISCONNECT', 'PINGREQ', 'PUBACK', 'PUBCOMP', 'PUBLISH', 'PUBREC', 'PUBREL', 'SUBSCRIBE', 'UNSUBSCRIBE']);
    for (const entry of Object.values(clientPacketTypes)) if (entry !== null) expect(mqttEntryPoints[entry]).toBeDefined();
  });

  it('docs/THREAT-MODEL.md explains every rule, capability and MQTT entry point of the table', () => {
    const doc = readFileSync(new URL('../../docs/THREAT-MODEL.md', import.meta.url), 'utf8');
    for (const rule of Object.keys(rules)) expect(doc, rule).toMatch(new RegExp(`^#+ ${rule}\\b`, 'm'));
    for (const capability of capabilities) expect(doc, capability).toContain(`\`${capability}\``);
    for (const entry of Object.keys(mqttEntryPoints)) expect(doc, entry).toContain(`\`${entry}\``);
    for (const route of routeTable.filter((r) => r.access.kind === 'certificate' || r.url.includes('relay'))) expect(doc, routeEntry(route)).toContain(`\`${routeEntry(route)}\``);
  });
});

/** Checks an observation against the cell; throws with the cell named. */
function assertOutcome(cell: Cell, seen: Observation): void {
  const where = `${cell.entry} × ${cell.capability} as ${cell.as}: ${JSON.stringify(seen)}`;
  const expected = cell.expect;
  if ('controlIn' in expected) {
    expect(existsSync(new URL(`../../${expected.controlIn}`, import.meta.url)), where).toBe(true);
    return;
  }
  if ('allowed' in expected) {
    if (seen.http?.code === 'CONSOLE_NOT_BUILT') return; // a checkout without `npm run build:console`
    if (seen.http !== undefined && cell.capability !== 'legitimate') {
      // A role allowed on a route: the guard lets it through (the deliberately invalid body stops it after).
      expect([401, 403], where).not.toContain(seen.http.status);
      expect(seen.http.status, where).toBeLessThan(500);
      return;
    }
    if (seen.http !== undefined && routeTable.some((r) => routeEntry(r) === cell.entry && r.access.kind !== 'certificate')) {
      expect([401, 403], where).not.toContain(seen.http.status);
      expect(seen.http.status, where).toBeLessThan(500);
      return;
    }
    expect(seen.succeeded, where).toBe(true);
    return;
  }
  expect(seen.leaked ?? [], `${where}: nothing may reach the watcher`).toEqual([]);
  expect(seen.received ?? [], `${where}: nothing may be delivered to the attacker`).toEqual([]);
  expect(seen.reply?.accepted ?? false, `${where}: no certificate`).toBe(false);
  switch (expected.refused) {
    case 'connect':
      expect(seen.connack, where).not.toBe(0);
      if (expected.connack !== undefined) expect(seen.connack, where).toBe(expected.connack);
      break;
    case 'packet':
      expect(seen.connack, `${where}: admitted by design, refused at the packet`).toBe(0);
      expect(seen.closed === true || seen.reply?.accepted === false || (seen.suback !== undefined && seen.suback.every((code) => code >= 0x80)), where).toBe(true);
      break;
    case 'mqtt':
      expect(seen.connack !== 0 || seen.closed === true || seen.reply?.accepted === false || (seen.suback?.every((code) => code >= 0x80) ?? false), where).toBe(true);
      if (expected.code !== undefined && seen.reply !== undefined) expect(seen.reply.code, where).toBe(expected.code);
      break;
    case 'closed':
      expect(seen.closed, where).toBe(true);
      expect(seen.connack, where).not.toBe(0);
      break;
    case 'http':
      expect(seen.http?.status, where).toBeGreaterThanOrEqual(400);
      expect(seen.http?.status, where).toBeLessThan(500);
      if (expected.status !== undefined) expect(seen.http?.status, where).toBe(expected.status);
      if (expected.code !== undefined) expect(seen.http?.code, where).toBe(expected.code);
      break;
  }
}

/** Runs one cell: snapshot, probe, outcome, audit, snapshot; for MQTT, the victim must still be connected. */
async function play(cell: Cell, skip: (note?: string) => void): Promise<void> {
  if (!kit.available(cell.capability)) return skip(`the gateway has no ${cell.capability}`);
  if ('controlIn' in cell.expect) return assertOutcome(cell, {});
  const before = await registrySnapshot(kit.registry);
  const started = Date.now();
  const seen = isMqttEntry(cell.entry) ? await probeMqtt(kit, cell as Cell & { entry: MqttEntry }) : await probeHttp(kit, cell);
  const victim = isMqttEntry(cell.entry) ? await kit.victimSession() : undefined;
  assertOutcome(cell, seen);
  if ('refused' in cell.expect) {
    expect(snapshotChanges(before, await registrySnapshot(kit.registry)), `${cell.entry} × ${cell.capability}: the registry must not change`).toEqual([]);
    const code = 'code' in cell.expect ? cell.expect.code : undefined;
    // Broker admission and packet refusals are audited one by one; with no code to match, count only entries
    // written since this cell started. The API's refusals may be sampled (see refusalAudited).
    expect(await refusalAudited(kit.registry, started, code, code !== undefined || !isMqttEntry(cell.entry)), `${cell.entry} × ${cell.capability}: a refused audit entry${code ? ` with ${code}` : ''}`).toBeDefined();
    expect(victim?.wasClosed ?? false, `${cell.entry} × ${cell.capability}: the victim's session must survive`).toBe(false);
  } else if (cell.capability !== 'legitimate' || !isMqttEntry(cell.entry)) {
    // Allowed reads and guard checks with invalid bodies change nothing either.
    if (!['POST /v1/enroll', 'POST /v1/renew', 'POST /.well-known/est/simpleenroll', 'POST /.well-known/est/simplereenroll'].includes(cell.entry)) {
      expect(snapshotChanges(before, await registrySnapshot(kit.registry)), `${cell.entry} × ${cell.capability}: the registry must not change`).toEqual([]);
    }
  }
}

const entryOrder = [...new Set(attackTable.map((cell) => cell.entry))];

describe('the handshake row (idle sockets, played together)', () => {
  const cells = attackTable.filter((cell) => cell.entry === 'tls-handshake');
  const seen = new Map<Cell, Observation>();
  let started = 0;
  let idleAudited = false;
  let before = new Map<string, string>();
  beforeAll(async () => {
    before = await registrySnapshot(kit.registry);
    started = Date.now();
    await Promise.all(cells.map(async (cell) => kit.available(cell.capability) && seen.set(cell, await probeMqtt(kit, cell as Cell & { entry: MqttEntry }))));
    // Only idle sockets are refused while this row plays: an entry written since it started is theirs.
    idleAudited = (await refusalAudited(kit.registry, started, undefined, false)) !== undefined;
  });
  it.for(cells)('$capability', async (cell, { skip }) => {
    if (!kit.available(cell.capability)) return skip();
    assertOutcome(cell, seen.get(cell) ?? {});
    if ('refused' in cell.expect) expect(idleAudited, 'a refused audit entry for the idle sockets').toBe(true);
    expect(snapshotChanges(before, await registrySnapshot(kit.registry))).toEqual([]);
  });
});

for (const entry of entryOrder.filter((e) => e !== 'tls-handshake')) {
  describe(entry, () => {
    it.for(attackTable.filter((cell) => cell.entry === entry))('$capability', async (cell, { skip }) => play(cell, skip));
  });
}

describe('variants', () => {
  it('POST /v1/enroll × batch-claim with attributes: what a device reports never widens its policy (R4)', async () => {
    const { csr, key } = await deviceKeyAndCsr('SN-attr-1');
    const enrolled = await kit.gw.api<{ certificate: string; chain: string }>('POST', '/v1/enroll', { body: { csr, serial: 'SN-attr-1', attributes: { tenant: 'victim' } }, credential: kit.tenantClaim });
    expect(enrolled.status, JSON.stringify(enrolled.body)).toBeLessThan(500);
    if (enrolled.status === 201) {
      const device = await kit.gw.connect('SN-attr-1', { key, cert: enrolled.body.certificate + enrolled.body.chain });
      try {
        expect(await subscribeGranted(device, ['groups/victim/#']), 'a reported attribute widened the policy').toEqual([0x80]);
        await kit.gw.waitForAudit({ action: 'mqtt.subscribe', result: 'refused' }, (e) => e.detail?.filter === 'groups/victim/#');
      } finally {
        device.end(true);
      }
    }
    // Control: the same attribute from a trusted source (an operator's registration) does widen it.
    const trusted = await kit.gw.createDevice('dev-tenant', { template: 'tenant', attributes: { tenant: 'victim' } });
    const control = await kit.gw.connect('dev-tenant', trusted);
    expect(await subscribeGranted(control, ['groups/victim/#'])).toEqual([0]);
    await control.endAsync();
  });
});

describe('afterwards', () => {
  it('no unhandled rejection happened, and a legitimate device still gets in', async () => {
    expect(unhandled).toEqual([]);
    const client = await kit.gw.connect('dev-after', await kit.device('dev-after'));
    await client.endAsync();
  });
});
