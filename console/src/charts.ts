import { html } from 'htm/preact';

/**
 * Small inline-SVG charts: a handful of rectangles says "how many, compared to what" without a chart
 * library. Colours come from CSS classes (`series-*`), since the CSP forbids inline styles.
 */

export interface Bar {
  readonly label: string;
  readonly value: number;
  readonly series: string;
}

/** Horizontal bars with their counts, one per row. */
export function BarChart({ bars, title }: { bars: readonly Bar[]; title: string }) {
  const width = 320;
  const row = 26;
  const labelWidth = 110;
  const max = Math.max(1, ...bars.map((b) => b.value));
  return html`<svg class="chart" viewBox=${`0 0 ${width} ${bars.length * row + 4}`} width=${width} height=${bars.length * row + 4} role="img" aria-label=${title}>
    <title>${title}</title>
    ${bars.map(
      (bar, i) => html`<g transform=${`translate(0 ${i * row + 2})`}>
        <text x="0" y="16" class="chart-label">${bar.label}</text>
        <rect x=${labelWidth} y="3" height="16" rx="2" width=${Math.max(bar.value > 0 ? 2 : 0, ((width - labelWidth - 40) * bar.value) / max)} class=${`series-${bar.series}`} />
        <text x=${labelWidth + ((width - labelWidth - 40) * bar.value) / max + 6} y="16" class="chart-value">${bar.value}</text>
      </g>`,
    )}
  </svg>`;
}

export interface Bucket {
  readonly label: string;
  readonly values: readonly number[];
}

/** Grouped vertical columns over time: one group per bucket, one column per series. */
export function ColumnChart({ buckets, series, title }: { buckets: readonly Bucket[]; series: readonly { name: string; class: string }[]; title: string }) {
  const width = 420;
  const height = 120;
  const base = height - 18;
  const max = Math.max(1, ...buckets.flatMap((b) => b.values));
  const group = width / Math.max(1, buckets.length);
  const column = Math.max(2, (group - 4) / series.length);
  return html`<svg class="chart" viewBox=${`0 0 ${width} ${height}`} width=${width} height=${height} role="img" aria-label=${title}>
    <title>${title}</title>
    <line x1="0" x2=${width} y1=${base + 0.5} y2=${base + 0.5} class="chart-axis" />
    ${buckets.map(
      (bucket, i) => html`<g transform=${`translate(${i * group + 2} 0)`}>
        ${bucket.values.map((value, s) => {
          const h = ((base - 4) * value) / max;
          return html`<rect x=${s * column} y=${base - h} width=${column - 1} height=${h} class=${series[s]?.class ?? ''}><title>${`${series[s]?.name ?? ''}: ${value} (${bucket.label})`}</title></rect>`;
        })}
        ${i % 3 === 0 ? html`<text x="0" y=${height - 4} class="chart-tick">${bucket.label}</text>` : null}
      </g>`,
    )}
  </svg>`;
}

/** One thin bar: how much of a limit is used (claims: uses vs max-uses). */
export function UsageBar({ used, max }: { used: number; max: number | null }) {
  const width = 120;
  const filled = max === null ? 0 : Math.min(width, (width * used) / Math.max(1, max));
  return html`<svg class="usage" width=${width} height="10" viewBox=${`0 0 ${width} 10`} role="img" aria-label=${max === null ? `${used} uses, no limit` : `${used} of ${max} uses`}>
    <rect x="0" y="0" width=${width} height="10" rx="2" class="usage-track" />
    <rect x="0" y="0" width=${filled} height="10" rx="2" class=${max !== null && used >= max ? 'usage-full' : 'usage-fill'} />
  </svg>`;
}
