#!/usr/bin/env node
// The CLI runs the JavaScript that `npm run build` (tsc -b) compiles into build/: no TypeScript loader
// at run time. `npm install` builds it (the `prepare` script); a checkout where nobody did gets told so.
import { existsSync } from 'node:fs';
import module from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = join(import.meta.dirname, '..');
const main = join(root, 'build', 'cli', 'main.js');
if (!existsSync(main)) {
  process.stderr.write(`fleetgate is not built (${main} is missing): run \`npm run build\` in ${root} (npm install runs it).\n`);
  process.exit(1);
}
// Node 22.1+ keeps V8's compiled code for build/ and node_modules on disk between starts (in the OS
// temporary directory); restarts then skip most parsing. Absent on Node 20, where this is a no-op.
module.enableCompileCache?.();
await import(pathToFileURL(main).href);
