import { type Command, Option } from 'commander';
import { ConfigError, resolveSettings, type ServeFlags, type SettingSource } from './config.ts';
import { emit } from './output.ts';
import { defaultText, envName, type ServerCommand, type Setting, type SettingKey, settingKeys, settings, withoutPassword } from './settings.ts';
import { formatTable } from './table.ts';

export const configOption = () => new Option('--config <file>', 'YAML file of settings, same keys as `fleetgate config print` lists (env FLEETGATE_CONFIG)');

/** Adds the flags of cli/settings.ts that `keep` selects, with the environment variable named in the help. */
export function addSettingOptions(command: Command, keep: (key: SettingKey, definition: Setting<unknown>) => boolean): Command {
  for (const key of settingKeys) {
    const definition: Setting<unknown> = settings[key];
    if (definition.flag === undefined || !keep(key, definition)) continue;
    // No commander default: an absent flag must leave the environment and the file to apply.
    command.addOption(new Option(`${definition.flag} <${definition.arg ?? 'value'}>`, `${definition.help} (env ${envName(key)}; default ${defaultText(key).replaceAll('`', '')})`));
  }
  return command;
}

/** The flags a server command takes: the settings without `commands`, and those that name it. */
export const serverFlags = (name: ServerCommand) => (_key: SettingKey, definition: Setting<unknown>) => definition.commands === undefined || definition.commands.includes(name);

export interface EffectiveSetting {
  readonly key: SettingKey;
  /** Redacted for secrets; null when unset. */
  readonly value: string | number | null;
  readonly source: SettingSource;
  /** The flag, variable or `file:line` that gave it. */
  readonly from: string | null;
}

/** A secret shows only that it is set; a URL keeps everything but its password. */
function shown(definition: Setting<unknown>, value: unknown): string | number | null {
  if (value === undefined) return null;
  if (definition.secret === 'token') return '[redacted]';
  if (definition.secret === 'url') return withoutPassword(String(value));
  return typeof value === 'number' ? value : String(value);
}

export function effectiveSettings(flags: ServeFlags, env: NodeJS.ProcessEnv): { configPath: string | undefined; settings: EffectiveSetting[] } {
  const problems: string[] = [];
  const resolved = resolveSettings(flags, env, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    configPath: resolved.configPath,
    settings: settingKeys.map((key) => ({
      key,
      value: shown(settings[key], resolved.values[key]),
      source: resolved.sources[key].source,
      from: resolved.sources[key].from ?? null,
    })),
  };
}

/** `fleetgate config print`: what a server started with the same flags, environment and file would use. */
export function registerConfigCommand(program: Command): void {
  const config = program.command('config').description('the settings of serve, provisioning and broker (README "Configuration file")');
  addSettingOptions(
    config
      .command('print')
      .description('show each setting: its effective value (secrets redacted) and where it came from (flag, env, file or default)')
      .addOption(configOption()),
    () => true,
  )
    .addOption(new Option('--json', 'print one JSON document for scripts'))
    .action((options: { json?: boolean; [flag: string]: string | boolean | undefined }) => {
      const { json, ...flags } = options;
      const effective = effectiveSettings(flags as ServeFlags, process.env);
      emit(Boolean(json), effective, () =>
        [
          `config file: ${effective.configPath ?? 'none (--config or FLEETGATE_CONFIG)'}`,
          formatTable(
            ['key', 'value', 'source', 'from'],
            effective.settings.map((s) => [s.key, s.value, s.source, s.from]),
          ),
        ].join('\n'),
      );
    });
}
