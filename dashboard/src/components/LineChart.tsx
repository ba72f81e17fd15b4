// A small SVG step chart over time. Values hold until the next sample (queue depth is a
// level, not a rate), and the last one is carried to `to`, so a quiet queue still draws.

export interface Series {
  label: string;
  color: string;
  points: { t: number; v: number }[];
  dashed?: boolean;
}

interface Props {
  series: Series[];
  from: number;
  to: number;
  height?: number;
  testId?: string;
}

const WIDTH = 640;
const PAD = { left: 44, right: 12, top: 10, bottom: 22 };

function niceMax(value: number): number {
  if (value <= 4) return 4;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, { hour12: false });
}

export function stepPath(points: { t: number; v: number }[], to: number, x: (t: number) => number, y: (v: number) => number): string {
  if (points.length === 0) return '';
  const first = points[0]!;
  let d = `M${x(first.t).toFixed(1)},${y(first.v).toFixed(1)}`;
  for (let i = 1; i < points.length; i++) {
    const p = points[i]!;
    d += `H${x(p.t).toFixed(1)}V${y(p.v).toFixed(1)}`;
  }
  return `${d}H${x(to).toFixed(1)}`;
}

export function LineChart({ series, from, to, height = 160, testId }: Props) {
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.v))));
  const span = Math.max(1, to - from);
  const x = (t: number) => PAD.left + ((Math.max(from, t) - from) / span) * (WIDTH - PAD.left - PAD.right);
  const y = (v: number) => PAD.top + (1 - v / max) * (height - PAD.top - PAD.bottom);
  const ticks = [0, max / 2, max];
  return (
    <figure className="chart" data-testid={testId}>
      <svg viewBox={`0 0 ${WIDTH} ${height}`} role="img" aria-label={series.map((s) => s.label).join(', ')}>
        {ticks.map((tick) => (
          <g key={tick}>
            <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y(tick)} y2={y(tick)} className="chart-grid" />
            <text x={PAD.left - 6} y={y(tick) + 4} textAnchor="end" className="chart-label">
              {Number.isInteger(tick) ? tick : tick.toFixed(1)}
            </text>
          </g>
        ))}
        <text x={PAD.left} y={height - 6} className="chart-label">
          {clock(from)}
        </text>
        <text x={WIDTH - PAD.right} y={height - 6} textAnchor="end" className="chart-label">
          {clock(to)}
        </text>
        {series.map((s) => (
          <path
            key={s.label}
            d={stepPath(s.points, to, x, y)}
            fill="none"
            stroke={s.color}
            strokeWidth={2}
            strokeDasharray={s.dashed ? '6 4' : undefined}
          />
        ))}
      </svg>
      <figcaption className="chart-legend">
        {series.map((s) => (
          <span key={s.label}>
            <i style={{ background: s.color }} />
            {s.label}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}
