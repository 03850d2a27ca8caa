#!/usr/bin/env node
// The CLI runs the TypeScript sources directly through tsx's loader: no build step between a clone and
// `npm start`. `tsc -b` (run by `npm test`) type-checks the same files.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
