// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Dependencies point one way (docs/architecture.md). TypeScript project references enforce it at build time; this
 *  rule gives the same answer in the editor with a message that says why. */
const layer = (files, forbidden, message) => ({
  files,
  rules: {
    'no-restricted-imports': ['error', { patterns: forbidden.map((group) => ({ group: [group], message })) }],
  },
});

export default tseslint.config(
  { ignores: ['node_modules/', 'build/', 'bench/.build/', '.ci/node24/', 'data/', 'test-output/', 'firmware-samples/**/build/', 'console/dist/', '**/*.d.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { console: 'readonly', process: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-syntax': ['error', { selector: 'ExportDefaultDeclaration', message: 'Named exports only (STYLE.md).' }],
      // NUL is exactly what topic and id rules must exclude.
      'no-control-regex': 'off',
    },
  },
  { files: ['*.config.{js,ts}'], rules: { 'no-restricted-syntax': 'off' } },
  layer(['core/**/*.ts'], ['node:*', '../registry/*', '../cluster/*', '../contract/*', '../broker/*', '../provisioning/*', '../cli/*', '../device-sim/*', 'fs', 'net', 'tls', 'crypto', 'path', 'os', 'child_process'], 'core/ is pure: no Node built-ins and no other folder of the repo.'),
  layer(['registry/**/*.ts'], ['../cluster/*', '../contract/*', '../broker/*', '../provisioning/*', '../cli/*', '../device-sim/*'], 'registry/ may import core/ only.'),
  // The storage door and the cluster's (Redis event bus, shared session list) are separate projects.
  layer(['cluster/**/*.ts'], ['../registry/*', '../contract/*', '../broker/*', '../provisioning/*', '../cli/*', '../device-sim/*'], 'cluster/ may import core/ only.'),
  // The HTTPS API's contract: the routes, the CLI and the browser console all read it, so it holds schemas and values only.
  layer(
    ['contract/**/*.ts'],
    ['node:*', '../registry/*', '../cluster/*', '../broker/*', '../provisioning/*', '../cli/*', '../device-sim/*', '../console/*', 'fs', 'net', 'tls', 'crypto', 'path', 'os', 'child_process'],
    'contract/ may import core/ and typebox only: the web console bundles it.',
  ),
  layer(['broker/**/*.ts'], ['../contract/*', '../provisioning/*', '../cli/*', '../device-sim/*'], 'broker/ may import core/, registry/ and cluster/ only; it meets provisioning/ in cli/.'),
  layer(['provisioning/**/*.ts'], ['../broker/*', '../cluster/*', '../cli/*', '../device-sim/*'], 'broker/ and provisioning/ never import each other; they meet in cli/.'),
  // The console runs in the browser and reaches the gateway over fetch only (the documented admin API); of the repo
  // it reads only the API's contract (types, and the values of contract/constants.ts: test/console/console-imports.test.ts).
  layer(
    ['console/src/**/*.ts'],
    ['node:*', 'typebox', '../../core/*', '../../registry/*', '../../cluster/*', '../../broker/*', '../../provisioning/*', '../../cli/*', '../../device-sim/*'],
    'console/ talks to the admin API over fetch only, and imports nothing of the repo but contract/.',
  ),
  layer(['device-sim/**/*.ts'], ['../registry/*', '../cluster/*', '../contract/*', '../broker/*', '../provisioning/*', '../cli/*'], 'device-sim/ talks to the services over the wire only.'),
);
