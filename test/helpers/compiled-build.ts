import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * Vitest global set-up. Tests import the TypeScript sources, but the processes they spawn run
 * `node bin/fleetgate.js`, i.e. the JavaScript compiled into build/ (README "Build and runtime"). `npm test`
 * compiles first; this keeps a targeted `npx vitest run <file>` from spawning a stale build. `tsc -b`
 * is incremental: about a second when nothing changed.
 */
export function setup(): void {
  const root = join(import.meta.dirname, '..', '..');
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', 'cli'], { cwd: root, stdio: 'inherit' });
}
