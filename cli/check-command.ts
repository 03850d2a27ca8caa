import { type Command, Option } from 'commander';
import { fleetCheckIds } from '../core/index.ts';
import type { CheckReport } from '../contract/index.ts';
import { callApi, operatorClient, type OperatorOptions, withOperatorOptions } from './operator-context.ts';
import { emit } from './output.ts';

const mark = { pass: 'PASS', warn: 'WARN', fail: 'FAIL' } as const;

/** The report as a reader wants it: one line per check, then what was found and what to do next. */
export function checkReportText(report: CheckReport): string {
  const lines = [`Fleet health checks at ${report.checkedAt}: ${report.status.toUpperCase()}`, ''];
  for (const item of report.items) {
    lines.push(`${mark[item.status]}  ${item.id.padEnd(27)} ${item.title}${item.count > 0 ? ` (${item.count})` : ''}`);
    for (const finding of item.findings) lines.push(`        - ${finding.subject}: ${finding.detail}`);
    if (item.nextStep !== null) lines.push(`        next: ${item.nextStep}`);
  }
  const failed = report.items.filter((i) => i.status === 'fail').length;
  const warned = report.items.filter((i) => i.status === 'warn').length;
  lines.push('', `${report.items.length} checks: ${failed} failed, ${warned} ${warned === 1 ? 'warning' : 'warnings'}.${failed > 0 ? ' Exit status 1.' : ''}`);
  return lines.join('\n');
}

/**
 * `fleetgate check` (README "Fleet health checks"): GET /v1/checks, printed. Exit status 1 when a check
 * fails, so cron and CI notice; a warning alone exits 0.
 */
export function registerCheckCommand(program: Command): void {
  withOperatorOptions(
    program
      .command('check')
      .description('run the fleet health checks (expiring CAs and certificates, cloned credentials, permissive claims and policies, …); exit status 1 if one fails')
      .addOption(new Option('--id <check>', 'only this check').choices(fleetCheckIds))
      .option('--cached', 'accept an answer up to a few seconds old instead of gathering the facts now'),
  ).action(async (options: OperatorOptions & { id?: string; cached?: boolean }) => {
    const search = new URLSearchParams({ ...(options.id ? { id: options.id } : {}), ...(options.cached ? {} : { fresh: 'true' }) });
    const report = await callApi<CheckReport>(operatorClient(options), 'GET', `/v1/checks?${search.toString()}`);
    emit(Boolean(options.json), report, () => checkReportText(report));
    if (report.items.some((item) => item.status === 'fail')) process.exitCode = 1;
  });
}
