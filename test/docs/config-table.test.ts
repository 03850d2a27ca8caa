import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveSettings } from '../../cli/config.ts';
import { settingKeys, settingsMarkdownTable } from '../../cli/settings.ts';
import { makeTempDir } from '../helpers/temp-dir.ts';

const root = join(import.meta.dirname, '..', '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const example = readFileSync(join(root, 'fleetgate.example.yaml'), 'utf8');

/** The settings are listed once, in cli/settings.ts; the README table and the example file follow it. */
describe('configuration reference', () => {
  it('README shows the table generated from cli/settings.ts', () => {
    // On failure, paste settingsMarkdownTable()'s output under "### Configuration" in README.md.
    expect(readme).toContain(settingsMarkdownTable());
  });

  it('README shows fleetgate.example.yaml as it ships', () => {
    expect(readme).toContain('```yaml\n' + example + '```');
  });

  it('the example names every setting, and is valid with every commented line enabled too', () => {
    for (const key of settingKeys) expect(example, key).toMatch(new RegExp(`^(# )?${key}(File)?: `, 'm'));
    const dir = makeTempDir();
    try {
      for (const [name, text] of [['as-shipped.yaml', example], ['all-enabled.yaml', example.replace(/^# ([a-zA-Z]+: )/gm, '$1')]] as const) {
        const path = join(dir.path, name);
        writeFileSync(path, text);
        const problems: string[] = [];
        resolveSettings({ config: path }, {}, problems);
        // The secret files the example names do not exist here; everything else must be accepted.
        expect(problems.filter((p) => !/cannot read \/run\/secrets\//.test(p)), name).toEqual([]);
      }
    } finally {
      dir.remove();
    }
  });
});
