import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runCli } from '../helpers/fleetgate-process.ts';

/**
 * No Docker engine runs here, so the compose file and the image are checked for what can be checked
 * without one: the topology the README promises ("Scale-out"), that every command and flag exists in this CLI, that the
 * build copies what the image needs, and that every file they reference is in the repository.
 */
const root = join(import.meta.dirname, '..', '..');

interface Service {
  image?: string;
  build?: string;
  entrypoint?: string[];
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  depends_on?: Record<string, unknown> | string[];
}
const compose = parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const { services } = compose;
const fleetgateServices = Object.entries(services).filter(([, service]) => service.image === 'fleetgate:latest');

/** The fleetgate arguments of a service: its command, what its `sh -c` wrapper execs, or what its deploy/ script runs. */
function fleetgateArgs(service: Service): string[] {
  const script = /^\/deploy\/(.+\.sh)$/.exec(service.entrypoint?.[1] ?? '')?.[1];
  if (script !== undefined) return (/node bin\/fleetgate\.js ([^\\|]*)/.exec(readFileSync(join(root, 'deploy', script), 'utf8'))?.[1] ?? '').trim().split(/\s+/);
  if (service.entrypoint?.[0] === 'sh') return (/exec node bin\/fleetgate\.js (.*)$/.exec(service.command?.[0] ?? '')?.[1] ?? '').split(' ');
  return service.command ?? ['serve'];
}

describe('docker-compose.yml', () => {
  it('runs the scale-out topology: 2 brokers, provisioning, PostgreSQL, Redis, a load balancer and a simulated fleet', () => {
    expect(Object.keys(services)).toEqual(expect.arrayContaining(['postgres', 'redis', 'provisioning', 'broker-a', 'broker-b', 'lb', 'sim']));
    expect(fleetgateArgs(services['provisioning'] as Service)[0]).toBe('provisioning');
    for (const name of ['broker-a', 'broker-b']) {
      const broker = services[name] as Service;
      expect(fleetgateArgs(broker)[0]).toBe('broker');
      expect(broker.environment?.FLEETGATE_REDIS_URL).toMatch(/^redis:\/\/redis:6379/);
      expect(broker.environment?.FLEETGATE_DATABASE_URL).toMatch(/^postgres:\/\/[^@]+@postgres:5432\//);
      expect(broker.environment?.FLEETGATE_PROVISIONING_URL).toMatch(/^https:\/\//);
    }
    expect(fleetgateArgs(services['sim'] as Service)[0]).toBe('sim');
  });

  it('gives CA keys and the admin token to provisioning only: brokers and the fleet mount their own volumes', () => {
    const holdsSecrets = Object.entries(services).filter(([, service]) => (service.volumes ?? []).some((volume) => volume.startsWith('data:')));
    // The one-shot jobs that read the admin token mount it read-only; only provisioning writes it.
    expect(holdsSecrets.map(([name]) => name).sort()).toEqual(['broker-credentials', 'claim', 'provisioning']);
    for (const [name, service] of holdsSecrets) if (name !== 'provisioning') expect(service.volumes).toContain('data:/data:ro');
    for (const name of ['broker-a', 'broker-b']) {
      const broker = services[name] as Service;
      expect(broker.volumes).toEqual([`${name}:/broker:ro`]);
      expect(broker.environment?.FLEETGATE_BROKER_TOKEN_FILE).toBe('/broker/broker.token');
      expect(broker.environment?.FLEETGATE_DATA_DIR).toBe('/broker');
    }
    expect(services['sim']?.volumes).toEqual(['claims:/claims:ro']);
  });

  it('only names services, volumes and files that exist', () => {
    for (const [name, service] of Object.entries(services)) {
      const dependencies = Array.isArray(service.depends_on) ? service.depends_on : Object.keys(service.depends_on ?? {});
      for (const dependency of dependencies) expect(Object.keys(services), `${name} depends on ${dependency}`).toContain(dependency);
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0] as string;
        if (source.startsWith('.')) expect(existsSync(join(root, source)), `${name} mounts ${source}`).toBe(true);
        else expect(Object.keys(compose.volumes), `${name} mounts volume ${source}`).toContain(source);
      }
    }
    const haproxy = readFileSync(join(root, 'deploy', 'haproxy.cfg'), 'utf8');
    for (const [, host] of haproxy.matchAll(/^\s*server \S+ ([\w-]+):\d+/gm)) expect(Object.keys(services)).toContain(host);
  });

  it.each(fleetgateServices.map(([name, service]) => [name, fleetgateArgs(service)] as const))('%s: every fleetgate flag it uses exists', async (_name, args) => {
    const subcommand = args.slice(0, ['claim', 'token'].includes(args[0] ?? '') ? 2 : 1);
    const help = await runCli([...subcommand, '--help']);
    expect(help.code).toBe(0);
    for (const flag of args.filter((arg) => arg.startsWith('--'))) expect(help.stdout, `${subcommand.join(' ')} ${flag}`).toContain(flag);
  });
});

describe('Dockerfile', () => {
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
  const stages = dockerfile.split(/^(?=FROM )/m).filter((stage) => stage.startsWith('FROM '));
  const runtime = stages.at(-1) ?? '';
  const packageJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string>; dependencies: Record<string, string>; devDependencies: Record<string, string> };

  it('builds on Node 24 in a build stage that copies every source folder it compiles, and each exists', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) expect(stage).toMatch(/^FROM node:24-bookworm-slim\b/);
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((match) => (match[1] as string).split(' '));
    for (const path of copied) expect(existsSync(join(root, path)), path).toBe(true);
    for (const needed of ['bin', 'core', 'registry', 'cluster', 'contract', 'broker', 'provisioning', 'cli', 'device-sim', 'console', 'package.json', 'package-lock.json', 'tsconfig.base.json']) expect(copied).toContain(needed);
  });

  it('ships a runtime stage with the compiled build and production dependencies only: no sources, no tsx, no compiler', () => {
    // Everything in the runtime stage comes from the build stage, and only these paths: build/ holds JavaScript.
    const runtimeCopies = [...runtime.matchAll(/^COPY (.+)$/gm)].map((match) => match[1] as string);
    expect(runtimeCopies.length).toBeGreaterThan(0);
    for (const line of runtimeCopies) {
      const [from, source] = line.split(/\s+/);
      expect(from, line).toBe('--from=build');
      expect(['/app/package.json', '/app/node_modules', '/app/bin', '/app/build', '/app/console/dist'], line).toContain(source);
    }
    expect(runtime).not.toMatch(/\btsx\b|\.ts\b|g\+\+|gcc|apt-get install|npm (ci|install)\b/);
    // node_modules is pruned of dev dependencies before it is copied, declarations are removed from build/.
    expect(dockerfile).toMatch(/npm prune --omit=dev/);
    expect(dockerfile).toMatch(/rm -rf build\/types/);
    for (const devOnly of ['tsx', 'typescript', 'esbuild']) {
      expect(Object.keys(packageJson.dependencies)).not.toContain(devOnly);
      expect(Object.keys(packageJson.devDependencies)).toContain(devOnly);
    }
    expect(runtime).toMatch(/^ENTRYPOINT \["node", "bin\/fleetgate\.js"\]$/m);
  });

  it('runs the scripts it names and does not run as root', () => {
    for (const [, script] of dockerfile.matchAll(/npm run ([\w:-]+)/g)) expect(Object.keys(packageJson.scripts)).toContain(script);
    expect(runtime).toMatch(/^USER node$/m);
  });

  it('keeps tests, data and local builds out of the build context', () => {
    const ignored = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n');
    for (const entry of ['node_modules', 'data', 'test']) expect(ignored).toContain(entry);
  });
});
