/**
 * Progress display for `arc-ttft run`: two live bars (overall with ETA, current task with its loss) on
 * a terminal; one plain line per finished task otherwise (logs, CI).
 *
 * @module
 */
import type { RunEvent } from '../ttft/run.js';

const BAR = 24;

function bar(done: number, total: number): string {
  const filled = total > 0 ? Math.round((BAR * Math.min(done, total)) / total) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}]`;
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
}

/** Turns run events into progress output on `stream` (stderr by default, so stdout stays clean). */
export class RunProgress {
  readonly #stream: NodeJS.WriteStream;
  readonly #live: boolean;
  readonly #started = performance.now();
  #total = 0;
  #done = 0;
  #ranThisTime = 0;
  #task = '';
  #step = 0;
  #steps = 0;
  #loss: number | null = null;
  #drawn = 0;
  /** Runs on a Ray pool: the task each worker is on (several at once, so no single step bar). */
  readonly #running = new Map<number, string>();

  /** Whether the run is between `run_started` and `run_finished` (the bars are shown). */
  #active = false;

  /**
   * @param live Draw live bars (default: when `stream` is a terminal and `CI` is not set); otherwise one
   * plain line per finished task.
   */
  constructor(stream: NodeJS.WriteStream = process.stderr, live?: boolean) {
    this.#stream = stream;
    this.#live = live ?? (stream.isTTY === true && process.env.CI === undefined);
  }

  /**
   * Writes a line of its own (a message, a Python log line) above the live bars, which are drawn again
   * below it: written straight to the stream, it would be erased by the next redraw.
   */
  note(line: string): void {
    this.#print(line);
    if (this.#live && this.#active) this.#draw();
  }

  /** Feed every event of the run here. */
  update(event: RunEvent): void {
    switch (event.type) {
      case 'run_started':
        this.#active = true;
        this.#total = event.total;
        this.#done = event.resumed;
        this.#print(
          `model: ${event.model.model} (${event.model.modelType}, ${(event.model.nParams / 1e6).toFixed(2)}M params, ${event.model.device}, ${event.model.dtype}, ${event.model.attention} attention)`,
        );
        if (event.model.embeddedStandIn) {
          this.#print(
            'note: this install has no models/embedded folder; "embedded" is a tiny random stand-in, so predictions are noise',
          );
        }
        this.#print(
          `${event.mode}: ${event.total} task${event.total === 1 ? '' : 's'}` +
            (event.resumed > 0 ? `, ${event.resumed} already done (resumed)` : '') +
            (event.retried > 0 ? `, ${event.retried} failed or timed out before (run again)` : '') +
            (event.invalid > 0 ? `, ${event.invalid} invalid (not run)` : ''),
        );
        if (
          event.model.maxPositionEmbeddings !== null &&
          event.maxSeqLen > event.model.maxPositionEmbeddings
        ) {
          this.#print(
            `note: --max-seq-len ${event.maxSeqLen} is past the model's ${event.model.maxPositionEmbeddings} positions: longer prompts go where it was never trained`,
          );
        }
        if (event.outside > 0) {
          this.#print(
            `note: the journal also holds ${event.outside} task${event.outside === 1 ? '' : 's'} outside this selection; the submission, metrics and report cover this selection only`,
          );
        }
        break;
      case 'whole_set_started':
        this.#task = 'whole set';
        this.#steps = event.steps;
        this.#step = 0;
        this.#print(`training one adapter on all tasks: ${event.samples} samples, ${event.steps} steps`);
        break;
      case 'task_started':
        if (event.worker !== undefined) this.#running.set(event.worker, event.taskId);
        this.#task = event.taskId;
        this.#step = 0;
        this.#steps = event.settings.steps;
        this.#loss = null;
        break;
      case 'train_step':
        this.#step = event.step;
        this.#steps = event.steps;
        this.#loss = event.loss;
        break;
      case 'task_retried': {
        const why = event.error.message.split('\n')[0]?.slice(0, 120);
        if (event.worker !== undefined) {
          this.#running.delete(event.worker);
          this.#print(
            `${event.taskId}: worker ${event.worker} lost (${why}); handed out again (retry ${event.retry})`,
          );
        } else {
          this.#print(
            `${event.taskId}: its kept adapter was lost (${why}); queued again (retry ${event.retry})`,
          );
        }
        break;
      }
      case 'task_finished': {
        for (const [worker, taskId] of this.#running)
          if (taskId === event.record.taskId) this.#running.delete(worker);
        this.#done = event.done;
        this.#ranThisTime++;
        const r = event.record;
        const loss = r.train?.losses.at(-1);
        this.#print(
          `${String(event.done).padStart(String(event.total).length)}/${event.total} ${r.taskId} ${r.status}` +
            ` ${r.seconds.toFixed(1)}s` +
            (loss !== undefined && loss !== null ? ` loss ${loss.toFixed(3)}` : '') +
            (r.error ? ` (${r.error.type}: ${r.error.message.split('\n')[0]?.slice(0, 120)})` : ''),
        );
        break;
      }
      case 'run_finished':
        this.#active = false;
        this.#clear();
        break;
    }
    if (this.#live && event.type !== 'run_finished') this.#draw();
  }

  #eta(): number {
    const elapsed = (performance.now() - this.#started) / 1000;
    if (this.#ranThisTime === 0) return Number.NaN;
    return (elapsed / this.#ranThisTime) * (this.#total - this.#done);
  }

  #clear(): void {
    if (!this.#live || this.#drawn === 0) return;
    this.#stream.write(`\x1b[${this.#drawn}A\x1b[0J`);
    this.#drawn = 0;
  }

  #print(line: string): void {
    this.#clear();
    this.#stream.write(`${line}\n`);
  }

  #draw(): void {
    this.#clear();
    const elapsed = (performance.now() - this.#started) / 1000;
    const overall = `tasks ${bar(this.#done, this.#total)} ${this.#done}/${this.#total}  elapsed ${duration(elapsed)}  eta ${duration(this.#eta())}`;
    const loss = this.#loss === null ? '' : `  loss ${this.#loss.toFixed(3)}`;
    const task =
      this.#running.size > 0
        ? `running: ${[...this.#running].map(([worker, taskId]) => `${taskId} (worker ${worker})`).join(', ')}`
        : !this.#task
          ? ''
          : this.#steps > 0
            ? `${this.#task.padEnd(10)} ${bar(this.#step, this.#steps)} step ${this.#step}/${this.#steps}${loss}`
            : `${this.#task.padEnd(10)} predicting`;
    // A line as wide as the terminal wraps, and the clear (which counts lines) would leave the rest behind.
    const width = this.#stream.columns;
    const cut = (line: string) =>
      width !== undefined && width > 1 && line.length >= width ? `${line.slice(0, width - 2)}…` : line;
    this.#stream.write(`${cut(overall)}\n${cut(task)}\n`);
    this.#drawn = 2;
  }
}
