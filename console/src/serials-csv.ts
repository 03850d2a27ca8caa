/**
 * Serials from an allow-list CSV, as `fleetgate allowlist import` reads it: first column, blank lines and
 * `#` comments skipped, and a `serial` header skipped.
 */
export function serialsFromCsv(text: string): string[] {
  const serials: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const first = (trimmed.split(',')[0] ?? '').trim().replace(/^"(.*)"$/, '$1');
    if (first === '' || first.toLowerCase() === 'serial') continue;
    serials.push(first);
  }
  return serials;
}
