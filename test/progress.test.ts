/**
 * The live progress display of `arc-ttft run`, on a small model of a terminal: lines never wrap, and a line
 * written between redraws (Ctrl-C's message, a Python log line) stays on screen.
 */
import { describe, expect, it } from 'vitest';
import { RunProgress } from '../src/cli/progress.js';
import type { RunEvent } from '../src/ttft/run.js';

const ESC = String.fromCharCode(27);
const CONTROL = new RegExp(`(${ESC}\\[\\d*[AJ])`);

/** A terminal `columns` wide that understands what RunProgress writes: text, newlines, ESC[nA and ESC[0J. */
class Screen {
  readonly lines: string[] = [''];
  row = 0;
  col = 0;
  isTTY = true;
  constructor(readonly columns: number) {}

  write(chunk: string): boolean {
    for (const part of chunk.split(CONTROL)) {
      if (part.startsWith(ESC)) {
        const n = Number(part.slice(2, -1) || 1);
        if (part.endsWith('A')) this.row = Math.max(0, this.row - n);
        else {
          // Erase from the cursor to the end of the screen.
          this.lines[this.row] = this.lines[this.row]!.slice(0, this.col);
          this.lines.length = this.row + 1;
        }
        continue;
      }
      for (const ch of part) {
        if (ch === '\n' || this.col === this.columns) {
          // A newline, or a line longer than the terminal wrapping onto the next row.
          this.row++;
          this.col = 0;
          this.lines[this.row] ??= '';
          if (ch === '\n') continue;
        }
        const line = this.lines[this.row]!.padEnd(this.col);
        this.lines[this.row] = line.slice(0, this.col) + ch + line.slice(this.col + 1);
        this.col++;
      }
    }
    return true;
  }

  get rows(): string[] {
    return this.lines.join('\n').trimEnd().split('\n');
  }
}

const started = {
  type: 'run_started',
  mode: 'single-task',
  model: {
    model: 'tiny',
    modelType: 'qwen2',
    nParams: 1e5,
    device: 'cpu',
    dtype: 'float32',
    attention: 'sdpa',
  },
  total: 4,
  maxSeqLen: 2048,
  resumed: 0,
  retried: 0,
  outside: 0,
  invalid: 0,
} as unknown as RunEvent;
const onWorker = (worker: number, taskId: string) =>
  ({
    type: 'task_started',
    taskId,
    index: worker,
    remaining: 4 - worker,
    worker,
    settings: { steps: 10, augmentations: 8 },
  }) as RunEvent;

describe('RunProgress on a terminal', () => {
  it('cuts the live lines to the terminal width, so redrawing leaves nothing behind', () => {
    const screen = new Screen(70);
    const progress = new RunProgress(screen as unknown as NodeJS.WriteStream, true);
    progress.update(started);
    for (let w = 0; w < 4; w++) progress.update(onWorker(w, `a-long-task-id-${w}`));
    const rows = screen.rows;
    expect(rows.every((row) => row.length < 70)).toBe(true);
    // The header lines, then exactly one overall bar and one "running" line: no stale copies from wrapping.
    expect(rows.filter((row) => row.startsWith('tasks ['))).toHaveLength(1);
    expect(rows.filter((row) => row.startsWith('running: '))).toEqual([expect.stringMatching(/…$/)]);
    expect(rows).toHaveLength(4);
  });

  it('keeps a line written between redraws above the bars', () => {
    const screen = new Screen(200);
    const progress = new RunProgress(screen as unknown as NodeJS.WriteStream, true);
    progress.update(started);
    progress.update(onWorker(0, 'task0'));
    progress.note('interrupted: stopping');
    // The bars come back at once below the line.
    expect(screen.rows.slice(-3).map((row) => row.slice(0, 12))).toEqual([
      'interrupted:',
      'tasks [.....',
      'running: tas',
    ]);
    progress.update({ type: 'train_step', taskId: 'task0', step: 1, steps: 10, loss: 1 } as RunEvent);
    const rows = screen.rows;
    expect(rows.slice(-3, -2)).toEqual(['interrupted: stopping']);
    expect(rows.at(-2)).toMatch(/^tasks \[/);
    expect(rows.filter((row) => row.startsWith('tasks ['))).toHaveLength(1);
  });

  it('shows a task without training (mode none, whole-set) as predicting, and notes a resume', () => {
    const screen = new Screen(200);
    const progress = new RunProgress(screen as unknown as NodeJS.WriteStream, true);
    progress.update({ ...started, resumed: 1, retried: 2, outside: 3 } as RunEvent);
    progress.update({
      type: 'task_started',
      taskId: 'task0',
      index: 0,
      remaining: 3,
      settings: { steps: 0, augmentations: 8 },
    } as RunEvent);
    expect(screen.rows.at(-1)).toBe('task0      predicting');
    expect(screen.rows).toContain(
      'single-task: 4 tasks, 1 already done (resumed), 2 failed or timed out before (run again)',
    );
    expect(screen.rows).toContain(
      'note: the journal also holds 3 tasks outside this selection; the submission, metrics and report cover this selection only',
    );
    // A maxSeqLen past the model's positions is allowed (RoPE extends), but said.
    const wide = new Screen(200);
    new RunProgress(wide as unknown as NodeJS.WriteStream, false).update({
      ...started,
      maxSeqLen: 8000,
      model: { ...(started as { model: object }).model, maxPositionEmbeddings: 2048 },
    } as RunEvent);
    expect(wide.rows).toContain(
      "note: --max-seq-len 8000 is past the model's 2048 positions: longer prompts go where it was never trained",
    );
  });

  it('writes plain lines only when not live', () => {
    const screen = new Screen(200);
    const progress = new RunProgress(screen as unknown as NodeJS.WriteStream, false);
    progress.update(started);
    progress.update(onWorker(0, 'task0'));
    progress.note('interrupted: stopping');
    expect(screen.rows.at(-1)).toBe('interrupted: stopping');
  });
});
