import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../../registry/index.ts';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';
import { until } from '../helpers/until.ts';

/**
 * Unauthenticated requests are an attacker's to send: the API records them sampled per code and second
 * (core/audit-sampler.ts). A burst leaves a handful of audit entries whose `refused` counts add up to the
 * number of requests, so the flood neither fills the disk nor goes unseen. The real API through `inject()`
 * (from 127.0.0.1), real registry.
 */
let gw: ApiUnderTest;

beforeAll(async () => {
  gw = await startApiUnderTest();
});
afterAll(async () => {
  await gw?.close();
});

const refusedEntries = async (code: string): Promise<AuditEntry[]> =>
  (await gw.dataDir.registry.queryAudit({ result: 'refused', limit: 1000 })).filter((entry) => entry.code === code);
const counted = (entries: readonly AuditEntry[]) => entries.reduce((sum, entry) => sum + Number(entry.detail?.refused ?? 0), 0);

describe('API refusal sampling', () => {
  it('turns 200 unauthenticated requests into a few audit entries that count all 200', async () => {
    const startedAt = Date.now();
    const answers = await Promise.all(Array.from({ length: 200 }, (_, n) => gw.api('GET', n % 2 === 0 ? '/v1/devices' : '/v1/audit')));
    const burstSeconds = (Date.now() - startedAt) / 1000;
    expect(answers.every((answer) => answer.status === 401)).toBe(true);

    await until(async () => counted(await refusedEntries('API_UNAUTHENTICATED')) >= 200, 'the sampled entries to count every refusal');
    const entries = await refusedEntries('API_UNAUTHENTICATED');
    expect(counted(entries)).toBe(200);
    // Two entries per one-second window at most: the first refusal as it was, then the rest of the window.
    expect(entries.length).toBeLessThanOrEqual(2 * (Math.ceil(burstSeconds) + 1));
    const first = entries.at(-1); // newest first
    expect(first).toMatchObject({ actor: 'api@127.0.0.1', result: 'refused', detail: { status: 401, refused: 1 } });
    expect(first?.action).toMatch(/^api GET \/v1\/(devices|audit)$/);
    const summary = entries.find((entry) => Number(entry.detail?.refused) > 1);
    expect(summary?.detail).toMatchObject({ status: 401, sources: ['127.0.0.1'], unlistedSources: 0 });
  });

  it('records unknown routes and malformed requests the same way, each code on its own', async () => {
    await Promise.all(Array.from({ length: 30 }, () => gw.api('GET', '/wp-admin/setup.php')));
    const malformed = await Promise.all(Array.from({ length: 30 }, () => gw.api('POST', '/v1/enroll', { body: '{"csr": ', contentType: 'application/json' })));
    expect(malformed.every((answer) => answer.status === 400)).toBe(true);
    await until(async () => counted(await refusedEntries('API_NOT_FOUND')) >= 30, 'the 404s to be counted');
    await until(async () => counted(await refusedEntries('REQUEST_INVALID')) >= 30, 'the malformed requests to be counted');
    expect(counted(await refusedEntries('API_NOT_FOUND'))).toBe(30);
    expect(counted(await refusedEntries('REQUEST_INVALID'))).toBe(30);
    const notFound = (await refusedEntries('API_NOT_FOUND')).at(-1);
    expect(notFound).toMatchObject({ actor: 'api@127.0.0.1', action: 'api GET /wp-admin/setup.php', detail: { status: 404, refused: 1 } });
  });

  it('still writes each refusal of a use-case (an authenticated caller) in full', async () => {
    const before = (await refusedEntries('DEVICE_NOT_FOUND')).length;
    for (let n = 0; n < 3; n++) expect((await gw.api('POST', '/v1/devices/ghost/suspend', { token: true, body: { reason: 'x' } })).status).toBe(404);
    expect((await refusedEntries('DEVICE_NOT_FOUND')).length).toBe(before + 3);
  });
});
