import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerCaCommands } from '../../cli/ca-commands.ts';
import type { CaRotation, CertificateAuthorityList } from '../../contract/index.ts';
import { type ApiUnderTest, startApiUnderTest } from '../helpers/api-under-test.ts';

/** `fleetgate ca list|rotate` (README "Rotating certificates and CAs") against the real API. */
let gw: ApiUnderTest;
beforeAll(async () => {
  gw = await startApiUnderTest();
});
afterAll(async () => {
  await gw?.close();
});

async function fleetgate(args: string[]): Promise<string> {
  const program = new Command('fleetgate').exitOverride();
  registerCaCommands(program);
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    out += String(chunk);
    return true;
  });
  try {
    await program.parseAsync([...args, '--api', `https://127.0.0.1:${await gw.listen()}`, '--data-dir', gw.dataDirPath], { from: 'user' });
  } finally {
    spy.mockRestore();
  }
  return out;
}

describe('fleetgate ca', () => {
  it('lists the CAs, and prints each rotation stage with the step that comes next', async () => {
    const listed = JSON.parse(await fleetgate(['ca', 'list', '--json'])) as CertificateAuthorityList;
    expect(listed.items.map((ca) => ca.role).sort()).toEqual(['claim', 'device', 'root']);
    const table = await fleetgate(['ca', 'list']);
    expect(table).toMatch(/ID\s+ROLE\s+STATE/);

    const prepared = await fleetgate(['ca', 'rotate', 'device', '--stage', 'prepare']);
    expect(prepared).toContain('fleetgate ca rotate device --stage activate');
    const activated = JSON.parse(await fleetgate(['ca', 'rotate', 'device', '--stage', 'activate', '--json'])) as CaRotation;
    const old = activated.items.find((ca) => ca.role === 'device' && ca.state === 'retiring');
    expect(activated.ca.state).toBe('active');
    const text = await fleetgate(['ca', 'rotate', 'claim', '--stage', 'prepare']);
    expect(text).toContain('Prepared claim CA');
    expect(old).toBeDefined();
    await expect(fleetgate(['ca', 'rotate', 'root', '--stage', 'retire'])).rejects.toMatchObject({ code: 'PKI_CA_ROTATION_STAGE' });
  });
});
