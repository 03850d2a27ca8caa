import { readFileSync } from 'node:fs';
import { isMap, isScalar, LineCounter, parseDocument } from 'yaml';
import { settings } from './settings.ts';

/** One value from the config file, as text (the flag and environment parsers read text), with its line. */
export interface FileEntry {
  readonly raw: string;
  /** `fleetgate.yaml:12`, for messages and `config print`. */
  readonly where: string;
}

export interface ConfigFile {
  readonly path: string;
  /** By key: a setting's key, or `<key>File` for a secret given as a file. */
  readonly entries: ReadonlyMap<string, FileEntry>;
}

/** Keys the file accepts: every setting, and `<key>File` for each secret (README "Configuration file"). */
const fileKeys: ReadonlySet<string> = new Set(Object.entries(settings).flatMap(([key, definition]) => ('secret' in definition ? [key, `${key}File`] : [key])));

/** A likely intended key for a misspelt one: same letters ignoring case, `_` and `-` (`mqtt_port` → mqttPort). */
function suggestion(key: string): string {
  const folded = (k: string) => k.toLowerCase().replace(/[_-]/g, '');
  const match = [...fileKeys].find((known) => folded(known) === folded(key));
  return match === undefined ? ' (`fleetgate config print` lists the keys)' : `; did you mean "${match}"?`;
}

/**
 * Reads a flat YAML map of setting keys. Every problem (syntax, unknown or repeated key, a value that is not a
 * single scalar) is pushed with its line, so the operator fixes the whole file in one pass.
 */
export function readConfigFile(path: string, problems: string[]): ConfigFile {
  const entries = new Map<string, FileEntry>();
  let source: string;
  try {
    source = readFileSync(path, 'utf8');
  } catch (error) {
    problems.push(`--config: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    return { path, entries };
  }
  const lineCounter = new LineCounter();
  const document = parseDocument(source, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number | undefined) => `${path}:${offset === undefined ? 1 : lineCounter.linePos(offset).line}`;
  for (const error of document.errors) problems.push(`${at(error.pos[0])}: ${error.message.split('\n')[0]}`);
  if (document.errors.length > 0) return { path, entries };
  const contents = document.contents;
  if (contents === null || (isScalar(contents) && contents.value === null)) return { path, entries };
  if (!isMap(contents)) {
    problems.push(`${at(contents.range?.[0])}: the config file must be a map of settings (key: value per line)`);
    return { path, entries };
  }
  for (const pair of contents.items) {
    const keyNode = pair.key;
    const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
    const where = at(isScalar(keyNode) ? keyNode.range?.[0] : undefined);
    if (!fileKeys.has(key)) {
      problems.push(`${where}: unknown key "${key}"${suggestion(key)}`);
      continue;
    }
    const value = pair.value;
    if (!isScalar(value) || value.value === null) {
      problems.push(`${where}: ${key} must be a single value${value === null || (isScalar(value) && value.value === null) ? ' (remove the line to use the default)' : ', not a list or map'}`);
      continue;
    }
    const scalar: unknown = value.value;
    if (typeof scalar !== 'string' && typeof scalar !== 'number' && typeof scalar !== 'boolean') {
      problems.push(`${where}: ${key} must be a single value`);
      continue;
    }
    entries.set(key, { raw: String(scalar), where });
  }
  return { path, entries };
}
