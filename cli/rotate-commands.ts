import { readFileSync } from 'node:fs';
import { waitUnlessAborted } from './abortable-wait.ts';
import { type Command, Option } from 'commander';
import { listLimit, type RotationCampaign, type RotationCampaignList, type RotationDevicePage, rotationOutcomes, rotationRate, type StartRotation } from '../contract/index.ts';
import { parseRotationRate } from '../core/index.ts';
import type { ApiClientOptions } from './api-client.ts';
import { callApi, operatorClient, type OperatorOptions, withOperatorOptions } from './operator-context.ts';
import { emit } from './output.ts';
import { formatTable } from './table.ts';

const path = (id: string) => `/v1/rotations/${encodeURIComponent(id)}`;
const finished = (campaign: RotationCampaign) => campaign.state === 'completed' || campaign.state === 'closed';

/**
 * `ids=@FILE`: one device id per line; blank lines and `#` comments are skipped, so a file written by
 * `fleetgate device list --json | jq -r '.items[].id'` or by hand both work.
 */
export function readIdFile(file: string): string[] {
  const text = readFileSync(file === '-' ? 0 : file, 'utf8');
  return text
    .split(/\r?\n/)
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter((line) => line !== '');
}

/** The request body for `--select`: `ids=@FILE` is read here and sent as a list. */
export function startBody(select: string, rate: string | undefined): StartRotation {
  const ratePerSecond = rate === undefined ? rotationRate.default : parseRotationRate(rate);
  if (select.startsWith('ids=@')) return { select: 'ids', ids: readIdFile(select.slice('ids=@'.length)), ratePerSecond };
  return { select, ratePerSecond };
}

/** One line per campaign: a bar of renewed devices, then every count, cut to `columns`. */
export function renderRotationLine(campaign: RotationCampaign, columns = 80): string {
  const { selected, renewed, notified, failed, offline, pending } = campaign.progress;
  const width = 24;
  const filled = selected === 0 ? width : Math.round((renewed / selected) * width);
  const line = `${campaign.id} ${campaign.state} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${renewed}/${selected} renewed, ${notified} notified, ${failed} failed, ${offline} offline, ${pending} pending`;
  return line.length > columns ? line.slice(0, columns) : line;
}

function campaignText(campaign: RotationCampaign): string {
  return [
    renderRotationLine(campaign, Number.POSITIVE_INFINITY),
    `  selector  ${campaign.selector} at ${campaign.ratePerSecond}/s`,
    `  started   ${campaign.createdAt} by ${campaign.createdBy}`,
    ...(campaign.endedAt ? [`  ended     ${campaign.endedAt}`] : []),
    ...(campaign.progress.failed > 0 ? [`  ${campaign.progress.failed} device(s) had a renewal refused: \`fleetgate rotate status ${campaign.id} --devices failed\` lists them, \`fleetgate audit --device ID --action device.renew\` says why`] : []),
    ...(campaign.progress.offline > 0 ? [`  ${campaign.progress.offline} device(s) were offline: each gets the command when it next connects`] : []),
  ].join('\n');
}

/** Redraws the campaign's line every `intervalMs` until it ends or `signal` aborts; returns the last state read. */
async function watch(client: ApiClientOptions, id: string, json: boolean, signal: AbortSignal, intervalMs = 1000): Promise<RotationCampaign> {
  const tty = process.stdout.isTTY && !json;
  let campaign = await callApi<RotationCampaign>(client, 'GET', path(id));
  for (;;) {
    if (json) process.stdout.write(JSON.stringify(campaign) + '\n');
    else if (tty) process.stdout.write(`\r\x1b[2K${renderRotationLine(campaign, Math.max(20, (process.stdout.columns || 80) - 1))}`);
    else process.stdout.write(renderRotationLine(campaign, Number.POSITIVE_INFINITY) + '\n');
    if (finished(campaign) || signal.aborted) break;
    await waitUnlessAborted(intervalMs, signal);
    if (signal.aborted) break;
    campaign = await callApi<RotationCampaign>(client, 'GET', path(id));
  }
  if (tty) process.stdout.write('\n');
  return campaign;
}

async function watchUntilInterrupted(client: ApiClientOptions, id: string, json: boolean): Promise<void> {
  // Ctrl-C ends a watch normally: it stops watching, never the campaign.
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await watch(client, id, json, controller.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

/**
 * `fleetgate rotate start|status|pause|resume|close` (README "Rotation campaigns"), all through the API.
 */
export function registerRotateCommands(program: Command): void {
  const rotate = program.command('rotate').description('rotation campaigns: tell a selection of devices to renew their certificates now, at a bounded rate');

  withOperatorOptions(
    rotate
      .command('start')
      .description('start a campaign; live devices are told at once (at --rate), offline ones when they next connect')
      .requiredOption('--select <selector>', "template=NAME | ca=CA_ID | expires-within=30d | ids=@FILE (one device id per line, - for stdin)")
      .option('--rate <n/s>', `devices told per second (${rotationRate.min}-${rotationRate.max})`, `${rotationRate.default}/s`)
      .option('--watch', 'then show its progress until it ends (Ctrl-C stops watching, not the campaign)'),
  ).action(async (options: OperatorOptions & { select: string; rate: string; watch?: boolean }) => {
    const client = operatorClient(options);
    const campaign = await callApi<RotationCampaign>(client, 'POST', '/v1/rotations', startBody(options.select, options.rate));
    emit(Boolean(options.json), campaign, () => `Started campaign ${campaign.id}: ${campaign.progress.selected} device(s) selected by ${campaign.selector}, told at ${campaign.ratePerSecond}/s.\nFollow it with \`fleetgate rotate status ${campaign.id} --watch\`.`);
    if (options.watch) await watchUntilInterrupted(client, campaign.id, Boolean(options.json));
  });

  withOperatorOptions(
    rotate
      .command('status')
      .description('every campaign with its progress, or one campaign (with --watch: until it ends)')
      .argument('[id]', 'campaign id')
      .option('--watch', 'redraw every second until the campaign ends (needs an id)')
      .addOption(new Option('--devices [outcome]', "list the campaign's devices, or only those with this outcome").choices(rotationOutcomes))
      .option('--after <id>', 'with --devices: start after this device id (paging)')
      .option('--limit <n>', `with --devices: at most this many (${listLimit.min}-${listLimit.max})`, String(listLimit.default)),
  ).action(async (id: string | undefined, options: OperatorOptions & { watch?: boolean; devices?: string | true; after?: string; limit: string }) => {
    const client = operatorClient(options);
    if (id !== undefined && options.devices !== undefined) {
      const search = new URLSearchParams({ limit: options.limit, ...(typeof options.devices === 'string' ? { outcome: options.devices } : {}), ...(options.after ? { after: options.after } : {}) });
      const page = await callApi<RotationDevicePage>(client, 'GET', `${path(id)}/devices?${search.toString()}`);
      emit(Boolean(options.json), page, () =>
        (page.items.length === 0 ? '(no devices)' : formatTable(['DEVICE', 'OUTCOME', 'REACHED', 'NOTIFIED'], page.items.map((d) => [d.deviceId, d.outcome, d.dispatchedAt, d.notifiedAt]))) +
        (page.next ? `\n(more: fleetgate rotate status ${id} --devices${typeof options.devices === 'string' ? ` ${options.devices}` : ''} --after ${page.next})` : ''),
      );
      return;
    }
    if (id === undefined) {
      if (options.watch || options.devices !== undefined) throw new Error('--watch and --devices need a campaign id: fleetgate rotate status ID --watch');
      const list = await callApi<RotationCampaignList>(client, 'GET', '/v1/rotations');
      emit(Boolean(options.json), list, () =>
        list.items.length === 0
          ? '(no campaigns)'
          : formatTable(
              ['ID', 'STATE', 'SELECTOR', 'RATE', 'SELECTED', 'NOTIFIED', 'RENEWED', 'FAILED', 'OFFLINE', 'PENDING', 'STARTED'],
              list.items.map((c) => [c.id, c.state, c.selector, `${c.ratePerSecond}/s`, c.progress.selected, c.progress.notified, c.progress.renewed, c.progress.failed, c.progress.offline, c.progress.pending, c.createdAt]),
            ),
      );
      return;
    }
    if (options.watch) return watchUntilInterrupted(client, id, Boolean(options.json));
    const campaign = await callApi<RotationCampaign>(client, 'GET', path(id));
    emit(Boolean(options.json), campaign, () => campaignText(campaign));
  });

  for (const [action, description, verb] of [
    ['pause', 'stop telling devices (those told may still renew, and count)', 'paused'],
    ['resume', 'go on telling devices at the campaign rate', 'resumed'],
    ['close', 'end the campaign for good (devices already told may still renew)', 'closed'],
  ] as const) {
    withOperatorOptions(rotate.command(action).description(description).argument('<id>', 'campaign id')).action(async (id: string, options: OperatorOptions) => {
      const campaign = await callApi<RotationCampaign>(operatorClient(options), 'POST', `${path(id)}/${action}`);
      emit(Boolean(options.json), campaign, () => `Campaign ${campaign.id} ${verb}.\n${campaignText(campaign)}`);
    });
  }
}
