/**
 * The HTML report of a run: one self-contained `report.html` (inline CSS, inline SVG, no script, no
 * external asset, no network) showing per task the train pairs, test inputs, both attempts, the expected
 * outputs when known, the top candidates, status, losses and timings, plus the run's metrics table.
 *
 * Every grid is one inline `<svg class="g">` holding one `<path data-c="k">` per colour present; a path's
 * `d` is a list of horizontal runs of cells, `M<x> <y>h<n>v1h-<n>z`, and `data-cells` is its number of
 * cells. That keeps the DOM small (≤ 11 nodes per grid, even for 30×30) so a 400-task report stays light.
 *
 * @module
 */
import { z } from 'zod';
import { formatPercent } from '../cli/table.js';
import { writeTextAtomic } from '../data/fs.js';
import { isGrid, isRecord, parseOptions } from '../data/validate.js';
import { ValidationError } from '../errors.js';
import { gridsEqual } from '../grid.js';
import type { Grid, Task, TaskSet } from '../schemas.js';
import { METRIC_DESCRIPTIONS, METRIC_NAMES, type ScoreReport } from '../score.js';
import {
  type CandidateRecord,
  type RunMode,
  TASK_STATUSES,
  type TaskRecord,
  type TaskStatus,
} from '../ttft/records.js';

/** ARC's colour palette: `ARC_PALETTE[k]` is the CSS colour of cell value `k` (0–9). */
export const ARC_PALETTE = [
  '#000000',
  '#0074D9',
  '#FF4136',
  '#2ECC40',
  '#FFDC00',
  '#AAAAAA',
  '#F012BE',
  '#FF851B',
  '#7FDBFF',
  '#870C25',
] as const;

/** How the run was made, shown at the top of the report. */
export interface ReportRunInfo {
  /** Which model made the predictions (`single-task` TTFT, one `whole-set` adapter, or `none`). */
  readonly mode: RunMode;
  /** Base model path or id. */
  readonly model: string;
  /** ISO time the run started (shown as given; the report adds no time of its own). */
  readonly startedAt: string;
  /** Wall-clock seconds of the whole run. */
  readonly seconds: number;
  /** The run's resolved options, shown as a table (values as JSON). */
  readonly options?: Readonly<Record<string, unknown>> | undefined;
}

/** What {@link renderReport} draws. */
export interface ReportInput {
  /**
   * Page title.
   * @default 'arc-ttft run report'
   */
  readonly title?: string | undefined;
  /** The run's tasks, with their test outputs where known (they give the ✓/✗ marks and the score column). */
  readonly tasks: TaskSet;
  /**
   * The run's journal records. When a task has several (a resumed run), the last one wins. Lines that are not
   * task records (the `run` and `whole_set` lines of results.jsonl) are skipped. A record of a task not in
   * `tasks` (e.g. status `invalid`) is shown after the others, without grids of its own.
   */
  readonly records: readonly TaskRecord[];
  /** The run's score; its aggregate metrics fill the metrics table and its task scores the score column. */
  readonly score?: ScoreReport | undefined;
  /** Run information for the header. */
  readonly run?: ReportRunInfo | undefined;
}

/** Options of {@link renderReport} and {@link writeReport}. */
export const ReportOptionsSchema = z.object({
  /**
   * Distinct candidates shown per test input (best first, with their votes); 0 hides them.
   * @default 3
   */
  candidates: z.number().int().nonnegative().default(3),
  /**
   * Largest side of a drawn grid, in CSS pixels: cells are `floor(gridPx / max(rows, cols))` pixels,
   * between 4 and 16 (whole pixels, so cell edges stay crisp).
   * @default 160
   */
  gridPx: z.number().int().min(30).max(2000).default(160),
});
/** Options of {@link renderReport} and {@link writeReport}. */
export type ReportOptions = z.input<typeof ReportOptionsSchema>;
type ResolvedOptions = z.output<typeof ReportOptionsSchema>;

/** A task's status in the report: the record's, or `pending` when the task has no record yet. */
type ShownStatus = TaskStatus | 'pending';

const STATUS_ORDER: readonly ShownStatus[] = [...TASK_STATUSES, 'pending'];

const STATUS_LABEL: Readonly<Record<ShownStatus, string>> = {
  done: 'done',
  too_long: 'too long',
  failed: 'failed',
  timed_out: 'timed out',
  invalid: 'invalid',
  pending: 'no record',
};

const STATUS_HELP: Readonly<Record<ShownStatus, string>> = {
  done: 'fine-tuned (unless mode none) and predicted',
  too_long: 'did not fit maxSeqLen even with one train pair; answered with a fallback',
  failed: 'the engine raised or crashed on it; answered with a fallback',
  timed_out: 'ran past its time limit; answered with a fallback',
  invalid: 'the task could not be loaded; answered with a fallback where its test inputs were readable',
  pending: 'the run has no record of this task (not run yet, or interrupted)',
};

// ---------------------------------------------------------------------------------------------------------
// Text helpers (all output goes through these, so nothing from the input can inject markup)

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes text for HTML content and (double- or single-quoted) attribute values. */
function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (ch) => ESCAPES[ch] ?? ch);
}

/** `1234567` → `1,234,567` (locale-independent, so the output is the same on every machine). */
function formatInt(n: number): string {
  if (!Number.isFinite(n)) return esc(String(n)); // a hand-edited journal can hold anything
  const sign = n < 0 ? '-' : '';
  return sign + String(Math.round(Math.abs(n))).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Seconds as `4.2 s`, `3 min 05 s` or `2 h 03 min`. */
function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return esc(String(s));
  if (s < 60) return `${s.toFixed(1)} s`;
  const total = Math.round(s);
  if (total < 3600) return `${Math.floor(total / 60)} min ${String(total % 60).padStart(2, '0')} s`;
  const minutes = Math.round(total / 60);
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/** A number with up to `digits` decimals, trailing zeros removed (`0.50` → `0.5`). */
function formatNum(n: number, digits: number): string {
  if (!Number.isFinite(n)) return esc(String(n)); // a hand-edited journal can hold anything
  const text = n.toFixed(digits);
  return text.includes('.') ? text.replace(/\.?0+$/, '') : text;
}

function plural(n: number, word: string): string {
  return `${formatInt(n)} ${word}${n === 1 ? '' : 's'}`;
}

/** The fragment id of a task's section. */
function anchor(id: string): string {
  return `task-${id}`;
}

// ---------------------------------------------------------------------------------------------------------
// Grids

function cellPx(rows: number, cols: number, gridPx: number): number {
  return Math.max(4, Math.min(16, Math.floor(gridPx / Math.max(rows, cols))));
}

/** One grid as an inline SVG: a path of horizontal cell runs per colour, then the grid lines. */
function gridSvg(grid: Grid, o: ResolvedOptions): string {
  const rows = grid.length;
  const cols = grid[0]?.length ?? 0;
  const runs: string[][] = Array.from({ length: 10 }, () => []);
  const counts = new Array<number>(10).fill(0);
  for (let y = 0; y < rows; y++) {
    const row = grid[y]!;
    let x = 0;
    while (x < cols) {
      const colour = row[x]!;
      let n = 1;
      while (x + n < cols && row[x + n] === colour) n++;
      runs[colour]!.push(`M${x} ${y}h${n}v1h-${n}z`);
      counts[colour]! += n;
      x += n;
    }
  }
  const px = cellPx(rows, cols, o.gridPx);
  const parts = [
    `<svg class="g" width="${cols * px}" height="${rows * px}" viewBox="0 0 ${cols} ${rows}" data-rows="${rows}" data-cols="${cols}" role="img" aria-label="${rows}×${cols} grid">`,
  ];
  runs.forEach((list, colour) => {
    if (list.length > 0) {
      parts.push(
        `<path class="c${colour}" data-c="${colour}" data-cells="${counts[colour]}" d="${list.join('')}"/>`,
      );
    }
  });
  let lines = '';
  for (let y = 1; y < rows; y++) lines += `M0 ${y}h${cols}`;
  for (let x = 1; x < cols; x++) lines += `M${x} 0v${rows}`;
  if (lines !== '') parts.push(`<path class="gl" d="${lines}"/>`);
  parts.push('</svg>');
  return parts.join('');
}

interface FigureParts {
  /** Extra class of the `<figure>`. */
  readonly cls?: string;
  /** HTML appended to the caption (a ✓/✗ mark). */
  readonly mark?: string;
  /** A second caption line (text). */
  readonly sub?: string;
}

/** A captioned grid: `caption shape mark`, an optional second line, then the grid. */
function figure(caption: string, grid: unknown, o: ResolvedOptions, parts: FigureParts = {}): string {
  const cls = parts.cls === undefined ? 'fig' : `fig ${parts.cls}`;
  const sub = parts.sub === undefined ? '' : `<span class="sub">${esc(parts.sub)}</span>`;
  const mark = parts.mark ?? '';
  if (!isGrid(grid)) {
    return `<figure class="${cls}"><figcaption>${esc(caption)}${mark}${sub}</figcaption><div class="nogrid">not a valid grid</div></figure>`;
  }
  const shape = `${grid.length}×${grid[0]!.length}`;
  return `<figure class="${cls}"><figcaption>${esc(caption)} <span class="dim">${shape}</span>${mark}${sub}</figcaption>${gridSvg(grid, o)}</figure>`;
}

function sameGrid(a: unknown, b: Grid | undefined): boolean | null {
  if (b === undefined) return null;
  return isGrid(a) && gridsEqual(a, b);
}

function checkMark(right: boolean | null): string {
  if (right === null) return '';
  return right
    ? ' <span class="ok" title="equals the expected output">✓</span>'
    : ' <span class="bad" title="differs from the expected output">✗</span>';
}

// ---------------------------------------------------------------------------------------------------------
// Per-task facts

interface Entry {
  readonly id: string;
  readonly task: Task | undefined;
  readonly record: TaskRecord | undefined;
  readonly status: ShownStatus;
  /** Per test output: attempt 1 or 2 right; `null` when the expected output is unknown. */
  readonly correct: readonly (boolean | null)[];
  /** Kaggle score of the task, `null` when unknown. */
  readonly score: number | null;
  /** `yes` (score 1), `no` (score < 1) or `unknown`; drives the filter. */
  readonly solved: 'yes' | 'no' | 'unknown';
}

function entries(input: ReportInput): Entry[] {
  const latest = new Map<string, TaskRecord>();
  for (const record of input.records) {
    // The lines of results.jsonl can be passed as they are: its `run` and `whole_set` lines are not tasks.
    if ((record as { type?: unknown }).type !== undefined && record.type !== 'task') continue;
    latest.set(record.taskId, record);
  }
  const ids = Object.keys(input.tasks);
  const known = new Set(ids);
  for (const id of latest.keys()) if (!known.has(id)) ids.push(id);

  return ids.map((id): Entry => {
    const task = Object.hasOwn(input.tasks, id) ? input.tasks[id] : undefined;
    const record = latest.get(id);
    const scored =
      input.score !== undefined && Object.hasOwn(input.score.tasks, id) ? input.score.tasks[id] : undefined;
    const nTests = task?.test.length ?? record?.attempts.length ?? 0;
    const correct = Array.from({ length: nTests }, (_, i): boolean | null => {
      const expected = task?.test[i]?.output;
      if (expected === undefined) return scored?.correct[i] ?? null;
      const attempts = record?.attempts[i];
      if (attempts === undefined) return false;
      return (
        sameGrid(attempts.attempt_1, expected) === true || sameGrid(attempts.attempt_2, expected) === true
      );
    });
    let score: number | null = scored?.score ?? null;
    if (score === null && correct.length > 0 && correct.every((c) => c !== null)) {
      score = correct.filter((c) => c === true).length / correct.length;
    }
    const solved = score === null ? 'unknown' : score === 1 ? 'yes' : 'no';
    return { id, task, record, status: record?.status ?? 'pending', correct, score, solved };
  });
}

function badge(status: ShownStatus): string {
  // A hand-edited journal may hold any status: show it as written, styled as a failure.
  const known = Object.hasOwn(STATUS_LABEL, status);
  const cls = known ? status : 'failed';
  const label = known ? STATUS_LABEL[status] : status;
  const help = known ? STATUS_HELP[status] : 'unknown status';
  return `<span class="badge s-${cls}" data-badge="${esc(status)}" title="${esc(help)}">${esc(label)}</span>`;
}

function scoreText(e: Entry): string {
  if (e.score === null) return '<span class="dim">unknown</span>';
  const right = e.correct.filter((c) => c === true).length;
  const cls = e.score === 1 ? 'ok' : 'bad';
  return `<span class="${cls}">${formatNum(e.score, 3)}</span> <span class="dim">(${right}/${e.correct.length})</span>`;
}

function lastLoss(record: TaskRecord | undefined): number | null {
  const losses = record?.train?.losses ?? [];
  for (let i = losses.length - 1; i >= 0; i--) {
    const v = losses[i];
    if (typeof v === 'number' && Number.isFinite(v)) return v;
  }
  return null;
}

/** A small line chart of the training losses; `null` losses break the line. */
function sparkline(losses: readonly (number | null)[]): string {
  const points = losses
    .map((v, i) => ({ v, i }))
    .filter((p): p is { v: number; i: number } => typeof p.v === 'number' && Number.isFinite(p.v));
  if (points.length === 0) return '';
  const w = 160;
  const h = 36;
  const pad = 3;
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const p of points) {
    lo = Math.min(lo, p.v);
    hi = Math.max(hi, p.v);
  }
  const span = hi - lo;
  const xOf = (i: number): string =>
    formatNum(losses.length === 1 ? w / 2 : pad + (i / (losses.length - 1)) * (w - 2 * pad), 2);
  const yOf = (v: number): string =>
    formatNum(span === 0 ? h / 2 : pad + ((hi - v) / span) * (h - 2 * pad), 2);
  const segments: string[][] = [];
  let current: string[] = [];
  losses.forEach((v, i) => {
    if (typeof v === 'number' && Number.isFinite(v)) current.push(`${xOf(i)},${yOf(v)}`);
    else if (current.length > 0) {
      segments.push(current);
      current = [];
    }
  });
  if (current.length > 0) segments.push(current);
  const shapes = segments.map((s) => {
    if (s.length === 1) {
      const [x, y] = s[0]!.split(',');
      return `<circle cx="${x}" cy="${y}" r="1.8"/>`;
    }
    return `<polyline points="${s.join(' ')}"/>`;
  });
  const first = points[0]!.v;
  const last = points[points.length - 1]!.v;
  const label = `training loss ${formatNum(first, 4)} → ${formatNum(last, 4)} over ${plural(losses.length, 'step')} (min ${formatNum(lo, 4)})`;
  return (
    `<span class="sparkwrap"><svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(label)}"><title>${esc(label)}</title>${shapes.join('')}</svg>` +
    `<span class="dim">loss ${formatNum(first, 4)} → <strong>${formatNum(last, 4)}</strong> · min ${formatNum(lo, 4)}</span></span>`
  );
}

// ---------------------------------------------------------------------------------------------------------
// Sections

const CSS = `
:root{color-scheme:light;--fg:#1d1f23;--muted:#5f6670;--line:#d9dde3;--panel:#f4f5f7}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1600px;padding:24px 32px 48px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans","DejaVu Sans",sans-serif;color:var(--fg);background:#fff}
h1{font-size:24px;margin:0 0 6px}
h2{font-size:18px;margin:28px 0 10px}
h3{font-size:12px;margin:14px 0 6px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
h3 .dim{text-transform:none;letter-spacing:0}
.testhead{display:flex;flex-wrap:wrap;gap:4px 10px;align-items:baseline;margin:2px 0 6px}.testhead h3{margin:0}
a{color:#0b5cad;text-decoration:none}a:hover{text-decoration:underline}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono","Liberation Mono",monospace;font-size:13px}
table{border-collapse:collapse}
th,td{padding:3px 12px 3px 0;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px}
.num{text-align:right;font-variant-numeric:tabular-nums}
.dim{color:var(--muted);font-weight:400}
.ok{color:#17692b;font-weight:700}.bad{color:#b3261e;font-weight:700}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap;vertical-align:middle}
.s-done{background:#dcf3e1;color:#17692b}.s-too_long{background:#fff0c2;color:#6e4c00}
.s-failed{background:#fddcd9;color:#9b1c14}.s-timed_out{background:#ffe2c7;color:#823a00}
.s-invalid{background:#ecdff6;color:#5b2380}.s-pending{background:#e8eaed;color:#4a5058}
.run{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
.run dt{color:var(--muted)}.run dd{margin:0}
.top{display:flex;flex-wrap:wrap;gap:8px 56px;align-items:flex-start}
.score{font-size:16px;margin:6px 0 10px}.score strong{font-size:26px;margin-right:6px}
.totals{margin:8px 0;padding-left:18px;color:var(--muted)}
.statuses{display:flex;flex-wrap:wrap;gap:8px 18px;list-style:none;padding:0;margin:8px 0}
.filter{border:0;padding:0;margin:10px 0;display:flex;flex-wrap:wrap;gap:4px 16px;align-items:center}
.filter legend{float:left;margin-right:10px;color:var(--muted)}
.filter label{cursor:pointer}
.index td:first-child{white-space:nowrap}
.task{border:1px solid var(--line);border-radius:8px;padding:12px 18px 16px;margin:18px 0;content-visibility:auto;contain-intrinsic-size:auto 560px}
.task>header{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center}
.task>header h2{margin:0;font-size:18px}
.facts{margin:6px 0;color:var(--muted)}.facts strong{color:var(--fg);font-weight:600}
.row{display:flex;flex-wrap:wrap;gap:12px 18px;align-items:flex-start}
.fig{margin:0;display:inline-flex;flex-direction:column;gap:3px}
.fig figcaption{font-size:12px;line-height:18px;color:var(--muted);white-space:nowrap}
.fig .sub{display:block}
.fig figcaption .ok,.fig figcaption .bad{font-size:14px}
.pair{display:inline-flex;align-items:flex-start;gap:8px;padding:8px 10px;background:var(--panel);border-radius:6px;border:1px solid transparent}
.pair.dropped{border:1px dashed #9a6b00;background:#fffaeb}
.dropnote{margin-left:6px;color:#6e4c00;font-weight:600}
.arrow{align-self:center;font-size:18px;color:var(--muted)}
.test{padding:8px 10px;background:var(--panel);border-radius:6px;margin:6px 0}
.test .row{align-items:flex-start}
.sep{align-self:stretch;border-left:1px solid var(--line)}
.cands{margin-top:8px}
.fallback{background:#fff0c2;color:#6e4c00;border-radius:4px;padding:0 6px;font-size:12px}
.nogrid{padding:8px;border:1px dashed #b3261e;color:#b3261e;font-size:12px}
pre.err{background:#fff4f3;border:1px solid #f1c0bb;color:#5c100b;padding:8px 10px;border-radius:6px;white-space:pre-wrap;overflow-wrap:anywhere;margin:8px 0}
details>summary{cursor:pointer;color:var(--muted)}
svg.g{display:block;outline:1px solid #888;shape-rendering:crispEdges}
${ARC_PALETTE.map((hex, k) => `.c${k}{fill:${hex}}`).join('')}
.gl{fill:none;stroke:#555;stroke-width:1px;vector-effect:non-scaling-stroke}
.sparkwrap{display:inline-flex;align-items:center;gap:8px}
.spark{background:var(--panel);border-radius:4px}
.spark polyline{fill:none;stroke:#0074d9;stroke-width:1.5;stroke-linejoin:round}.spark circle{fill:#0074d9}
body:has(#f-solved:checked) [data-solved]:not([data-solved="yes"]),
body:has(#f-unsolved:checked) [data-solved]:not([data-solved="no"]),
body:has(#f-failed:checked) [data-status="done"]{display:none}
`
  .trim()
  .replace(/\n/g, '');

function runSection(run: ReportRunInfo | undefined, entriesList: readonly Entry[]): string {
  const items: [string, string][] = [];
  if (run !== undefined) {
    items.push(['mode', `<code>${esc(run.mode)}</code>`]);
    items.push(['model', `<code>${esc(run.model)}</code>`]);
    items.push(['started', esc(run.startedAt)]);
    items.push(['duration', esc(formatSeconds(run.seconds))]);
  }
  const records = entriesList.filter((e) => e.record !== undefined).length;
  items.push([
    'tasks',
    `${formatInt(entriesList.length)} <span class="dim">(${formatInt(records)} with a record)</span>`,
  ]);
  let html = `<dl class="run">${items.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl>`;
  const options = run?.options;
  if (options !== undefined && Object.keys(options).length > 0) {
    const rows = Object.keys(options)
      .sort()
      .map((k) => {
        let value: string;
        try {
          value = JSON.stringify(options[k]) ?? String(options[k]);
        } catch {
          value = String(options[k]);
        }
        return `<tr><td><code>${esc(k)}</code></td><td><code>${esc(value)}</code></td></tr>`;
      });
    html += `<details class="options"><summary>options (${rows.length})</summary><table><tbody>${rows.join('')}</tbody></table></details>`;
  }
  return html;
}

function metricsSection(score: ScoreReport | undefined): string {
  if (score === undefined) {
    return '<section id="metrics"><h2>Metrics</h2><p class="dim">No score: the run was not scored (the expected outputs are unknown or no score report was given).</p></section>';
  }
  const notes: string[] = [];
  if (score.unanswered.length > 0) {
    notes.push(`${plural(score.unanswered.length, 'test output')} had no entry and count as wrong.`);
  }
  if (score.extraTasks.length > 0) {
    notes.push(`${plural(score.extraTasks.length, 'task')} not in the solutions were ignored.`);
  }
  const rows = METRIC_NAMES.map(
    (name) =>
      `<tr data-metric="${name}"><td><code>${name}</code></td><td class="num">${formatPercent(score.metrics[name])}</td><td>${esc(METRIC_DESCRIPTIONS[name])}</td></tr>`,
  );
  return (
    `<section id="metrics"><h2>Metrics</h2>` +
    `<p class="score" data-score="${score.score}"><strong>${score.score.toFixed(4)}</strong>Kaggle score (${formatPercent(score.score, 2)}) over ${plural(score.nTasks, 'task')}, ${plural(score.nTestOutputs, 'test output')}</p>` +
    notes.map((n) => `<p class="dim">${esc(n)}</p>`).join('') +
    `<table class="metrics"><thead><tr><th>metric</th><th class="num">value</th><th>meaning</th></tr></thead><tbody>${rows.join('')}</tbody></table>` +
    '<p class="dim">Each value: mean over test outputs within a task, then mean over tasks.</p></section>'
  );
}

function summarySection(list: readonly Entry[]): string {
  const counts = new Map<ShownStatus, number>();
  for (const e of list) counts.set(e.status, (counts.get(e.status) ?? 0) + 1);
  const order = [...STATUS_ORDER, ...[...counts.keys()].filter((s) => !STATUS_ORDER.includes(s))];
  const statuses = order
    .filter((s) => (counts.get(s) ?? 0) > 0)
    .map((s) => {
      const n = counts.get(s) ?? 0;
      return `<li data-status-count="${esc(s)}" data-count="${n}">${badge(s)} ${formatInt(n)}</li>`;
    });
  let trainSeconds = 0;
  let predictSeconds = 0;
  let trainTokens = 0;
  let generated = 0;
  let fallbacks = 0;
  let dropped = 0;
  for (const e of list) {
    const r = e.record;
    if (r === undefined) continue;
    trainSeconds += r.train?.seconds ?? 0;
    trainTokens += r.train?.tokens ?? 0;
    predictSeconds += r.predict?.seconds ?? 0;
    generated += r.predict?.generatedTokens ?? 0;
    fallbacks += r.fallback.length;
    dropped += r.droppedTrain.length;
  }
  const facts = [
    `training ${formatSeconds(trainSeconds)} (${formatInt(trainTokens)} tokens)`,
    `prediction ${formatSeconds(predictSeconds)} (${formatInt(generated)} tokens generated)`,
    `${plural(fallbacks, 'fallback answer')}`,
    `${plural(dropped, 'train pair')} dropped to fit`,
  ];
  return `<section id="summary"><h2>Statuses</h2><ul class="statuses">${statuses.join('')}</ul><ul class="totals">${facts.map((f) => `<li>${esc(f)}</li>`).join('')}</ul></section>`;
}

function indexSection(list: readonly Entry[]): string {
  const solved = list.filter((e) => e.solved === 'yes').length;
  const unsolved = list.filter((e) => e.solved === 'no').length;
  const notDone = list.filter((e) => e.status !== 'done').length;
  const radio = (id: string, label: string, n: number, title: string, checked = false): string =>
    `<label title="${esc(title)}"><input type="radio" name="filter" id="${id}"${checked ? ' checked' : ''}> ${label} <span class="dim">(${formatInt(n)})</span></label>`;
  const filter =
    '<fieldset class="filter"><legend>Show</legend>' +
    radio('f-all', 'all', list.length, 'every task', true) +
    radio('f-solved', 'solved', solved, 'every test output right (score 1)') +
    radio('f-unsolved', 'unsolved', unsolved, 'some test output wrong (score below 1)') +
    radio(
      'f-failed',
      'failed / fallback',
      notDone,
      'status other than done: too long, failed, timed out, invalid, no record',
    ) +
    '</fieldset>';
  const rows = list.map((e) => {
    const r = e.record;
    const nTrain = e.task?.train.length;
    const kept = r === undefined ? '' : `${r.keptTrain.length}${nTrain === undefined ? '' : `/${nTrain}`}`;
    const loss = lastLoss(r);
    return (
      `<tr data-task="${esc(e.id)}" data-status="${esc(e.status)}" data-solved="${e.solved}">` +
      `<td><a class="mono" href="#${esc(encodeURIComponent(anchor(e.id)))}">${esc(e.id)}</a></td>` +
      `<td>${badge(e.status)}</td>` +
      `<td class="num">${scoreText(e)}</td>` +
      `<td class="num">${kept}</td>` +
      `<td class="num">${r?.train === undefined ? '' : formatInt(r.train.steps)}</td>` +
      `<td class="num">${loss === null ? '' : formatNum(loss, 4)}</td>` +
      `<td class="num">${r === undefined ? '' : esc(formatSeconds(r.seconds))}</td></tr>`
    );
  });
  return (
    `<section id="index"><h2>Tasks</h2>${filter}` +
    '<table class="index"><thead><tr><th>task</th><th>status</th><th class="num">score</th><th class="num" title="train pairs kept / given">pairs</th><th class="num">steps</th><th class="num">last loss</th><th class="num">time</th></tr></thead>' +
    `<tbody>${rows.join('')}</tbody></table></section>`
  );
}

function candidatesHtml(
  candidates: readonly CandidateRecord[],
  expected: Grid | undefined,
  o: ResolvedOptions,
): string {
  if (o.candidates === 0 || candidates.length === 0) return '';
  const shown = candidates.slice(0, o.candidates).map((c, k) => {
    const logp = c.meanLogProb === null ? '' : ` · logp ${formatNum(c.meanLogProb, 3)}`;
    return figure(`#${k + 1}`, c.grid, o, {
      cls: 'cand',
      mark: checkMark(sameGrid(c.grid, expected)),
      sub: `${plural(c.votes, 'vote')}${logp}`,
    });
  });
  const more =
    candidates.length > o.candidates
      ? ` <span class="dim">(top ${o.candidates} of ${candidates.length})</span>`
      : '';
  return `<div class="cands"><h3>Candidates${more}</h3><div class="row">${shown.join('')}</div></div>`;
}

function taskSection(e: Entry, o: ResolvedOptions): string {
  const r = e.record;
  const parts: string[] = [
    `<section class="task" id="${esc(anchor(e.id))}" data-task="${esc(e.id)}" data-status="${esc(e.status)}" data-solved="${e.solved}">`,
    `<header><h2 class="mono">${esc(e.id)}</h2>${badge(e.status)}<span>score ${scoreText(e)}</span></header>`,
  ];

  if (r !== undefined) {
    const facts: string[] = [
      `<strong>${formatSeconds(r.seconds)}</strong> total`,
      `${plural(r.settings.steps, 'step')}, ${plural(r.settings.augmentations, 'view')}`,
    ];
    if (r.train !== undefined) {
      facts.push(
        `train <strong>${formatSeconds(r.train.seconds)}</strong> (${formatInt(r.train.tokens)} tokens, ${plural(r.train.samples, 'sample')})`,
      );
    } else facts.push('no training');
    if (r.predict !== undefined) {
      facts.push(
        `predict <strong>${formatSeconds(r.predict.seconds)}</strong> (${formatInt(r.predict.generatedTokens)} tokens generated)`,
      );
    }
    parts.push(`<p class="facts">${facts.join(' · ')}</p>`);
    if (r.train !== undefined && r.train.losses.length > 0)
      parts.push(`<div>${sparkline(r.train.losses)}</div>`);
    if (r.error !== undefined) {
      parts.push(`<pre class="err">${esc(r.error.type)}: ${esc(r.error.message)}</pre>`);
      if (r.error.traceback !== undefined && r.error.traceback !== '') {
        parts.push(
          `<details><summary>traceback</summary><pre class="err">${esc(r.error.traceback)}</pre></details>`,
        );
      }
    }
  } else {
    parts.push('<p class="facts">No record: the run has not finished this task.</p>');
  }

  const task = e.task;
  if (task === undefined) {
    parts.push('<p class="dim">The task is not in the report’s task set, so its grids are not shown.</p>');
  } else {
    const dropped = new Set(r?.droppedTrain ?? []);
    const used =
      r === undefined
        ? ''
        : ` <span class="dim">(${r.keptTrain.length} of ${task.train.length} used${
            dropped.size > 0
              ? `; dropped ${[...dropped]
                  .sort((a, b) => a - b)
                  .map((i) => i + 1)
                  .join(', ')} to fit`
              : ''
          })</span>`;
    const pairs = task.train.map((pair, i) => {
      const isDropped = dropped.has(i);
      const tag = isDropped
        ? '<span class="dropnote" title="left out of the prompt to fit maxSeqLen">dropped</span>'
        : '';
      return `<div class="${isDropped ? 'pair dropped' : 'pair'}" data-train="${i}">${figure(`train ${i + 1} input`, pair.input, o, { mark: tag })}<span class="arrow">→</span>${figure('output', pair.output, o)}</div>`;
    });
    parts.push(`<h3>Train pairs${used}</h3><div class="row">${pairs.join('')}</div>`);
  }

  const nTests = task?.test.length ?? r?.attempts.length ?? 0;
  const fallback = new Set(r?.fallback ?? []);
  for (let i = 0; i < nTests; i++) {
    const test = task?.test[i];
    const expected = test?.output;
    const attempts = r?.attempts[i];
    const predicted = r?.predict?.tests.find((t) => t.testIndex === i);
    const notes: string[] = [];
    if (fallback.has(i))
      notes.push(
        '<span class="fallback" title="no prediction: a fallback grid was submitted">fallback</span>',
      );
    if (predicted !== undefined) {
      notes.push(
        `<span class="dim">${plural(predicted.views, 'view')}, ${formatInt(predicted.failures)} unparsable, ${plural(predicted.candidates.length, 'distinct grid')}</span>`,
      );
    }
    const right = e.correct[i];
    const head = `Test ${i + 1}${right === true ? ' <span class="ok">✓</span>' : right === false ? ' <span class="bad">✗</span>' : ''}`;
    const figs: string[] = [];
    if (test !== undefined) figs.push(figure('test input', test.input, o, { cls: 'input' }));
    figs.push('<span class="sep"></span>');
    if (attempts !== undefined) {
      figs.push(
        figure('attempt 1', attempts.attempt_1, o, {
          cls: 'attempt',
          mark: checkMark(sameGrid(attempts.attempt_1, expected)),
        }),
      );
      figs.push(
        figure('attempt 2', attempts.attempt_2, o, {
          cls: 'attempt',
          mark: checkMark(sameGrid(attempts.attempt_2, expected)),
        }),
      );
    } else {
      figs.push('<p class="dim">no attempts</p>');
    }
    if (expected !== undefined) {
      figs.push('<span class="sep"></span>');
      figs.push(figure('expected', expected, o, { cls: 'expected' }));
    }
    parts.push(
      `<div class="test" data-test="${i}"><div class="testhead"><h3>${head}</h3>${notes.join(' ')}</div><div class="row">${figs.join('')}</div>` +
        `${predicted === undefined ? '' : candidatesHtml(predicted.candidates, expected, o)}</div>`,
    );
  }
  parts.push('</section>');
  return parts.join('');
}

// ---------------------------------------------------------------------------------------------------------
// Entry points

/** The parts of a report input every page reads; a wrong shape is a {@link ValidationError}, not a TypeError. */
function checkReportInput(input: ReportInput): void {
  const problem = !isRecord(input)
    ? { path: '', message: 'the report input must be an object with tasks and records' }
    : !isRecord(input.tasks)
      ? { path: 'tasks', message: 'tasks must be an object keyed by task id' }
      : !Array.isArray(input.records) || !input.records.every((r: unknown) => isRecord(r))
        ? { path: 'records', message: 'records must be an array of task records (the run journal)' }
        : input.score !== undefined && !isRecord(input.score)
          ? { path: 'score', message: 'score must be a ScoreReport' }
          : undefined;
  if (problem !== undefined) throw new ValidationError({ source: 'renderReport', issues: [problem] });
}

/**
 * Renders the report of a run as one self-contained HTML page (inline CSS and SVG; no script, no external
 * asset). Pure and deterministic: the same input gives the same text. All text from the input is escaped.
 * Grids that are not valid (from a hand-edited journal) are shown as "not a valid grid" instead of failing.
 */
export function renderReport(input: ReportInput, options?: ReportOptions): string {
  const o = parseOptions(ReportOptionsSchema, options, 'renderReport');
  checkReportInput(input);
  const title = input.title ?? 'arc-ttft run report';
  const list = entries(input);
  const body = [
    `<header><h1>${esc(title)}</h1>${runSection(input.run, list)}</header>`,
    `<div class="top">${metricsSection(input.score)}${summarySection(list)}</div>`,
    indexSection(list),
    list.length === 0
      ? '<p class="dim">No tasks.</p>'
      : `<main>${list.map((e) => taskSection(e, o)).join('\n')}</main>`,
  ];
  return (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<meta name="generator" content="arc-ttft"><title>${esc(title)}</title><style>${CSS}</style></head>\n` +
    `<body>\n${body.join('\n')}\n</body></html>\n`
  );
}

/**
 * Renders the report ({@link renderReport}) and writes it to `path` atomically (a temporary file in the
 * same folder, then renamed), creating parent folders.
 *
 * @throws {FileError} when the file cannot be written (no temporary file is left behind).
 */
export async function writeReport(path: string, input: ReportInput, options?: ReportOptions): Promise<void> {
  await writeTextAtomic(path, renderReport(input, options));
}
