import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeBuiltApi, renderApiReference } from './api-reference.ts';

/** `npm run docs:api`: rewrites docs/api-reference.md from the API as built (see docs/api-reference.ts). */
const out = join(import.meta.dirname, 'api-reference.md');
writeFileSync(out, renderApiReference(await describeBuiltApi()));
process.stdout.write(`wrote ${out}\n`);
