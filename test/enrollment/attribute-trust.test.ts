import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerFactoryCommands } from '../../cli/factory-commands.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { type ClientCredential, closed, nextMessage, startTestGateway, subscribeGranted, type TestGateway } from '../helpers/test-gateway.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

/**
 * Where `${device.attributes.*}` comes from (README "Enrollment and renewal"). A policy grants each tenant
 * its group topics; a device that claims `tenant: victim` in its enrollment request must not land in the
 * victim's group. Attributes that widen a policy come from the allow-list row the factory imported; what
 * the device reports is kept as `reportedAttributes`, shown to operators, and never reaches a policy.
 */
let gw: TestGateway;
let claim: ClientCredential & { claimId: string };
let victim: MqttClient;
const dir = makeTempDir();
const registry = () => gw.gateway.dataDir.registry;

async function enrollMqtt(serial: string, body: Record<string, unknown>): Promise<{ topic: string; body: Record<string, string> }> {
  const client = await gw.connect(serial, claim);
  try {
    const base = `$fleetgate/enroll/${serial}`;
    await client.subscribeAsync([`${base}/accepted`, `${base}/rejected`], { qos: 1 });
    const answer = new Promise<{ topic: string; body: Record<string, string> }>((resolve) => {
      client.on('message', (topic, payload) => resolve({ topic, body: JSON.parse(payload.toString()) as Record<string, string> }));
    });
    await client.publishAsync(`${base}/request`, JSON.stringify(body), { qos: 1 });
    return await answer;
  } finally {
    client.end(true);
  }
}

/** Enrolls over MQTT, then opens the device's own session with the certificate it got. */
async function enrollAndConnect(serial: string, attributes: Record<string, string>): Promise<MqttClient> {
  const keys = await deviceKeyAndCsr(serial);
  const answer = await enrollMqtt(serial, { csr: keys.csr, attributes });
  expect(answer.topic, JSON.stringify(answer.body)).toBe(`$fleetgate/enroll/${serial}/accepted`);
  return gw.connect(serial, { key: keys.key, cert: `${answer.body.certificate}${answer.body.chain}` });
}

/** `fleetgate allowlist import …` in-process, against the gateway's API with its admin token. */
async function cli(args: string[]): Promise<string> {
  const program = new Command('fleetgate').exitOverride();
  registerFactoryCommands(program);
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  });
  try {
    await program.parseAsync([...args, '--api', `https://127.0.0.1:${gw.apiPort}`, '--data-dir', gw.dataDirPath], { from: 'user' });
  } finally {
    spy.mockRestore();
  }
  return chunks.join('');
}

beforeAll(async () => {
  gw = await startTestGateway();
  const policy = {
    statements: [
      { sid: 'own', effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#'] },
      { sid: 'tenant-group', effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['groups/${device.attributes.tenant}/#'] },
    ],
  };
  expect((await gw.api('PUT', '/v1/policies/tenants', { body: policy, token: true })).status).toBe(200);
  expect((await gw.api('POST', '/v1/templates', { body: { name: 'tenanted', policy: 'tenants' }, token: true })).status).toBe(201);
  claim = await gw.issueClaim({ template: 'tenanted', maxUses: 20 });
  // A member of the victim tenant, registered by an operator with a trusted attribute.
  const member = await gw.createDevice('victim-1', { template: 'tenanted', attributes: { tenant: 'victim' } });
  victim = await gw.connect('victim-1', member);
  await victim.subscribeAsync('groups/victim/#', { qos: 0 });
});
afterAll(async () => {
  victim?.end(true);
  await gw?.close();
  dir.remove();
});

describe('attributes a device reports', () => {
  it('are kept apart and never widen its policy: no subscribe, no publish, nothing received in the tenant group', async () => {
    const intruder = await enrollAndConnect('sn-evil', { tenant: 'victim' });
    expect(await subscribeGranted(intruder, ['groups/victim/#', 'devices/sn-evil/#'])).toEqual([0x80, 0]);
    const heard = nextMessage(victim, 'groups/victim/orders', 500);
    intruder.publish('groups/victim/orders', 'open the doors');
    expect(await closed(intruder)).toBe(true);
    expect(await heard).toBeUndefined();
    await gw.waitForAudit({ deviceId: 'sn-evil', action: 'mqtt.publish', result: 'refused' }, (e) => e.code === 'ACL_PUBLISH_DENIED');

    expect(await registry().getDevice('sn-evil')).toMatchObject({ attributes: {}, reportedAttributes: { tenant: 'victim' } });
    const shown = await gw.api<{ device: { attributes: unknown; reportedAttributes: unknown } }>('GET', '/v1/devices/sn-evil', { token: true });
    expect(shown.body.device).toMatchObject({ attributes: {}, reportedAttributes: { tenant: 'victim' } });
  });

  it('also over POST /v1/enroll', async () => {
    const keys = await deviceKeyAndCsr('sn-evil-2');
    const answer = await gw.api('POST', '/v1/enroll', { body: { csr: keys.csr, serial: 'sn-evil-2', attributes: { tenant: 'victim' } }, credential: claim });
    expect(answer.status).toBe(201);
    expect(await registry().getDevice('sn-evil-2')).toMatchObject({ attributes: {}, reportedAttributes: { tenant: 'victim' } });
  });
});

describe('attributes from the allow-list', () => {
  it('come from the row the factory imported, whatever the device claims, and grant that tenant only', async () => {
    const imported = await gw.api('POST', '/v1/templates/tenanted/allowlist', { body: { serials: [{ serial: 'sn-acme-1', attributes: { tenant: 'acme' } }, 'sn-plain'] }, token: true });
    expect(imported).toMatchObject({ status: 200, body: { added: 2, total: 2 } });

    const device = await enrollAndConnect('sn-acme-1', { tenant: 'victim' });
    expect(await registry().getDevice('sn-acme-1')).toMatchObject({ attributes: { tenant: 'acme' }, reportedAttributes: { tenant: 'victim' } });
    expect(await subscribeGranted(device, ['groups/acme/#', 'groups/victim/#'])).toEqual([0, 0x80]);
    const own = nextMessage(device, 'groups/acme/news');
    await device.publishAsync('groups/acme/news', 'hello tenant');
    expect(await own).toBe('hello tenant');
    await device.endAsync();
  });

  it('are read from the extra CSV columns by `fleetgate allowlist import`, with the header naming them', async () => {
    const file = join(dir.path, 'serials.csv');
    writeFileSync(file, 'serial,tenant,site\nsn-csv-1,victim,plant-7\nsn-csv-2,,plant-8\n# a comment\n');
    const out = await cli(['allowlist', 'import', '--template', 'tenanted', file, '--json']);
    expect(JSON.parse(out)).toMatchObject({ read: 2, added: 2 });

    const member = await enrollAndConnect('sn-csv-1', {});
    expect(await registry().getDevice('sn-csv-1')).toMatchObject({ attributes: { tenant: 'victim', site: 'plant-7' }, reportedAttributes: {} });
    expect(await subscribeGranted(member, ['groups/victim/#'])).toEqual([0]);
    await member.endAsync();
    // An empty cell sets nothing: that device has no tenant, so the tenant statement grants it nothing.
    const other = await enrollAndConnect('sn-csv-2', { tenant: 'victim' });
    expect(await registry().getDevice('sn-csv-2')).toMatchObject({ attributes: { site: 'plant-8' } });
    expect(await subscribeGranted(other, ['groups/victim/#'])).toEqual([0x80]);
    await other.endAsync();
  });

  it('refuses attribute values that could not be one topic level, importing nothing', async () => {
    const answer = await gw.api('POST', '/v1/templates/tenanted/allowlist', { body: { serials: ['sn-ok-9', { serial: 'sn-bad-9', attributes: { tenant: 'a/#' } }] }, token: true });
    expect(answer).toMatchObject({ status: 400, body: { code: 'ATTRIBUTE_INVALID' } });
    expect(await registry().isSerialAllowed('tenanted', 'sn-ok-9')).toBe(false);
  });
});
