import type { FleetProgress } from './fleet-runner.ts';

export interface ProgressBar {
  update(progress: FleetProgress): void;
  /** Erases the line so the summary starts on a clean terminal. */
  finish(): void;
}

/**
 * One self-overwriting status line on a terminal. Redraws at most every `intervalMs`, because a fleet
 * reports thousands of milestones per second and each redraw is a write to the terminal.
 */
export function createProgressBar(stream: NodeJS.WritableStream & { columns?: number }, options: { intervalMs?: number; now?: () => number } = {}): ProgressBar {
  const intervalMs = options.intervalMs ?? 100;
  const now = options.now ?? (() => performance.now());
  let lastDrawn = -Infinity;
  let latest: FleetProgress | undefined;
  let drawn = false;
  const draw = () => {
    if (latest === undefined) return;
    // A pseudo-terminal that was never sized reports 0 columns.
    const line = renderProgressLine(latest, Math.max(20, (stream.columns || 80) - 1));
    stream.write(`\r\x1b[2K${line}`);
    drawn = true;
    lastDrawn = now();
  };
  return {
    update(progress) {
      latest = progress;
      if (now() - lastDrawn >= intervalMs) draw();
    },
    finish() {
      if (drawn) stream.write('\r\x1b[2K');
    },
  };
}

/** The status line itself, cut to `columns`; a pure function so it can be tested without a terminal. */
export function renderProgressLine(progress: FleetProgress, columns = 80): string {
  const seconds = progress.elapsedMs / 1000;
  let line: string;
  if (progress.phase === 'enrolling') {
    const done = progress.online + progress.failed;
    const barWidth = 24;
    const filled = progress.total === 0 ? barWidth : Math.round((done / progress.total) * barWidth);
    const rate = seconds > 0 ? Math.round(progress.enrolled / seconds) : 0;
    line = `enrolling [${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${progress.online}/${progress.total} online, ${progress.failed} failed, ${rate}/s`;
  } else {
    const left = progress.remainingMs === undefined ? 'Ctrl-C to stop' : `${Math.ceil(progress.remainingMs / 1000)} s left`;
    line = `${progress.phase} ${progress.online}/${progress.total} online, ${progress.failed} failed, ${progress.telemetrySent} telemetry, ${progress.renewals} renewals, ${left}`;
  }
  return line.length > columns ? line.slice(0, columns) : line;
}
