import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { afterAll, beforeAll, expect, vi } from 'vitest';
import { ValidationError } from '../src/errors.js';
import { createRng } from '../src/rng.js';
import type { Grid, Task, TaskSet } from '../src/schemas.js';
import { createEngine, type Engine, type EngineOptions, makeTinyModel } from '../src/ttft/engine.js';
import type { TaskRecord } from '../src/ttft/records.js';

/** Repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Read-only ARC data shared beside the repo (CI has it too). */
export const SHARED_DATA = resolve(ROOT, '../shared/arc-data');
export const ARC1_TRAINING = join(SHARED_DATA, 'arc-agi-1/training');
export const ARC1_EVALUATION = join(SHARED_DATA, 'arc-agi-1/evaluation');
export const KAGGLE = join(SHARED_DATA, 'kaggle-2024');
export const HAS_SHARED_DATA = existsSync(SHARED_DATA);

/** Every task of the ARC-AGI-1 training set, by id, in id order (read-only, from ../shared). */
export function loadArc1Training(): Map<string, Task> {
  const tasks = new Map<string, Task>();
  for (const file of readdirSync(ARC1_TRAINING)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    tasks.set(file.slice(0, -5), JSON.parse(readFileSync(join(ARC1_TRAINING, file), 'utf8')) as Task);
  }
  return tasks;
}

/** What a CLI command wrote, and its exit code. */
export interface CommandRun {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs a commander subcommand in-process (`make()` builds it), capturing its output and exit code. */
export async function runCommandInProcess(make: () => Command, args: string[]): Promise<CommandRun> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  const previous = process.exitCode;
  process.exitCode = undefined;
  let exitCode = 0;
  try {
    await make().exitOverride().parseAsync(args, { from: 'user' });
    exitCode = Number(process.exitCode ?? 0);
  } catch (error) {
    // exitOverride: commander throws its usage errors instead of exiting.
    exitCode = (error as { exitCode?: number }).exitCode ?? 1;
  } finally {
    out.mockRestore();
    err.mockRestore();
    process.exitCode = previous;
  }
  return { stdout, stderr, exitCode };
}

/** The ValidationError `fn` throws (fails the test when it throws nothing or something else). */
export function thrown(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error('expected a ValidationError, nothing was thrown');
}

/**
 * Synthetic tasks `const0…` whose answer is one fixed grid per task: a random tiny base cannot guess
 * it, a LoRA learns it in a few dozen steps, so runs on CPU make real predictions. Test outputs are
 * included unless `solutions` is false.
 */
export function constantTasks(n: number, { solutions = true }: { solutions?: boolean } = {}): TaskSet {
  const set: TaskSet = {};
  for (let k = 0; k < n; k++) {
    const rng = createRng(100 + k);
    const grid = (): Grid => Array.from({ length: 3 }, () => Array.from({ length: 3 }, () => rng.int(10)));
    const answer: Grid = [
      [k % 10, (k + 1) % 10],
      [(k + 2) % 10, k % 10],
    ];
    set[`const${k}`] = {
      train: Array.from({ length: 3 }, () => ({ input: grid(), output: answer })),
      test: [solutions ? { input: grid(), output: answer } : { input: grid() }],
    };
  }
  return set;
}

/** A task record without its timings, for comparing runs. */
export function stableRecord(r: TaskRecord): unknown {
  const { seconds: _s, finishedAt: _f, ...rest } = r;
  return {
    ...rest,
    train: r.train && { ...r.train, seconds: 0, compileSeconds: undefined },
    predict: r.predict && { ...r.predict, seconds: 0 },
  };
}

/**
 * A record without timings, its losses and log-probs rounded: a batch of other shapes (or compiled
 * training) changes float rounding only.
 */
export function roundedRecord(r: TaskRecord): unknown {
  const x = stableRecord(r) as TaskRecord;
  return {
    ...x,
    train: x.train && { ...x.train, losses: x.train.losses.map((l) => (l === null ? null : l.toFixed(3))) },
    predict: x.predict && {
      ...x.predict,
      tests: x.predict.tests.map((t) => ({
        ...t,
        candidates: t.candidates.map((c) => ({
          ...c,
          meanLogProb: c.meanLogProb === null ? null : c.meanLogProb.toFixed(3),
        })),
      })),
    },
  };
}

/** The task records of a run's journal (`results.jsonl`), in the order written. */
export function readJournal(out: string): TaskRecord[] {
  return readFileSync(join(out, 'results.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l))
    .filter((v) => v.type === 'task');
}

/** The engine's Python for tests: `npm test` sets ARC_TTFT_PYTHON; without it the engine finds its own. */
export const PY: { pythonBin?: string } =
  process.env.ARC_TTFT_PYTHON !== undefined ? { pythonBin: process.env.ARC_TTFT_PYTHON } : {};

/** What {@link useTinyEngine} gives a test file (read the fields inside tests, after `beforeAll`). */
export interface TinyEngineFixture {
  /** A temporary folder, removed after the file's tests. */
  readonly dir: string;
  /** The tiny random model's folder (`dir/tiny`, seed 0). */
  readonly model: string;
  /** One engine on it (one thread), closed after the file's tests. */
  readonly engine: Engine;
}

/** Makes a tiny random model and one engine on it before the file's tests, and closes and removes both after. */
export function useTinyEngine(name: string, options: EngineOptions = {}): TinyEngineFixture {
  const state: { dir?: string; model?: string; engine?: Engine } = {};
  beforeAll(async () => {
    state.dir = mkdtempSync(join(tmpdir(), `arc-ttft-${name}-`));
    state.model = (await makeTinyModel(join(state.dir, 'tiny'), { seed: 0, ...PY })).path;
    state.engine = await createEngine({ model: state.model, threads: 1, ...options, ...PY });
  }, 180_000);
  afterAll(async () => {
    await state.engine?.close();
    if (state.dir !== undefined) rmSync(state.dir, { recursive: true, force: true });
  });
  const need = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`useTinyEngine(${name}): ${what} is read before beforeAll ran`);
    return value;
  };
  return {
    get dir() {
      return need(state.dir, 'dir');
    },
    get model() {
      return need(state.model, 'model');
    },
    get engine() {
      return need(state.engine, 'engine');
    },
  };
}
