import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir } from './temp-dir.ts';

/** Where Debian's softhsm2 installs its PKCS#11 module (README "CA keys in an HSM"). */
export const softHsmModule = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'].find((path) => existsSync(path));

export interface SoftHsmToken {
  readonly label: string;
  readonly pin: string;
  /** SOFTHSM2_CONF (this token's own configuration and storage) and FLEETGATE_PKCS11_PIN. */
  readonly env: Record<string, string>;
  /** `--key-store` for `fleetgate init`. */
  readonly storeUri: string;
  /** The token's own storage: the only place its keys are on disk. */
  readonly storage: string;
  /** Takes the token away (its storage moves aside) and puts it back: a token pulled out and plugged in again. */
  unplug(): void;
  plugIn(): void;
  remove(): void;
}

/** A throwaway SoftHSM2 token with its own configuration file, initialised with softhsm2-util. */
export function createSoftHsmToken(label = 'fleetgate-test', pin = '246810'): SoftHsmToken {
  if (softHsmModule === undefined) throw new Error('softhsm2 is not installed (apt-get install softhsm2; .ci/run installs it)');
  const dir = makeTempDir('fleetgate-softhsm-');
  const storage = join(dir.path, 'tokens');
  const aside = join(dir.path, 'unplugged');
  mkdirSync(storage);
  mkdirSync(aside);
  const conf = join(dir.path, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${storage}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const env = { SOFTHSM2_CONF: conf, FLEETGATE_PKCS11_PIN: pin };
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', `${pin}0`], { env: { ...process.env, ...env }, stdio: 'ignore' });
  const move = (from: string, to: string) => {
    for (const name of readdirSync(from)) renameSync(join(from, name), join(to, name));
  };
  return {
    label,
    pin,
    env,
    storeUri: `pkcs11:token=${label};object=fleetgate?module-path=${softHsmModule}`,
    storage,
    unplug: () => move(storage, aside),
    plugIn: () => move(aside, storage),
    remove: dir.remove,
  };
}
