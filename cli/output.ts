import { FleetgateError } from '../core/index.ts';
import { ConfigError } from './config.ts';

/** Every subcommand prints either readable text or, with --json, one JSON document on stdout. */
export function emit(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

/** Errors tell the user what to do next; codes are the catalogue's, so scripts can branch on them. */
export function reportError(error: unknown, json: boolean): number {
  if (error instanceof ConfigError) {
    process.stderr.write(json ? JSON.stringify({ code: 'CONFIG_INVALID', problems: error.problems }) + '\n' : `fleetgate: ${error.message}\n`);
    return 2;
  }
  if (error instanceof FleetgateError) {
    process.stderr.write(json ? JSON.stringify({ code: error.code, message: error.message }) + '\n' : `fleetgate: ${error.code}: ${error.message}\n`);
    return 1;
  }
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(json ? JSON.stringify({ code: 'INTERNAL', message }) + '\n' : `fleetgate: unexpected error: ${message}\n`);
  return 1;
}
