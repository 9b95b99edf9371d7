import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ALL_TRANSFORMS, applyAugmentation, identityAugmentation } from '../src/augment.js';
import { type CountTokens, charCount, type FitOptions, type FitSuccess, fitTask } from '../src/budget.js';
import { inspectCommand, POSITION_KEYS, readModelFacts } from '../src/cli/commands/inspect.js';
import { TaskTooLongError, ValidationError } from '../src/errors.js';
import { answerTextFor, buildInferencePrompt, largestAnswerShape } from '../src/format/prompt.js';
import { filledGrid } from '../src/grid.js';
import type { Task } from '../src/schemas.js';
import { loadQwenTokenizer } from '../src/tokenizers/qwen.js';
import { ARC1_EVALUATION, ARC1_TRAINING, ROOT, runCommandInProcess } from './helpers.js';

function load(dir: string, id: string): Task {
  return JSON.parse(readFileSync(join(dir, `${id}.json`), 'utf8')) as Task;
}
/** 6 train pairs of different sizes. */
const MANY = load(ARC1_TRAINING, '0d3d703e');
/** 5 train pairs, 9×9 outputs. */
const MID = load(ARC1_TRAINING, '007bbfb7');
/** Large 30×30 grids: one arc24 names as never fitting 4096 tokens. */
const BIG = load(ARC1_EVALUATION, '25094a63');
/** Two test inputs. */
const TWO_TESTS = load(ARC1_TRAINING, 'ff28f65a');

/** Recomputes, independently of fitTask, the worst-case compact length with the given train pairs. */
function compactTokens(task: Task, kept: readonly number[]): number {
  const [r, c] = largestAnswerShape(task);
  const answer = answerTextFor(filledGrid(r, c), 'compact');
  const train = kept.map((i) => task.train[i]!);
  return (
    Math.max(...task.test.map((t) => buildInferencePrompt(train, t.input, 'compact').length)) +
    answer.length +
    1
  );
}

/** Size proxy of a pair in the compact format. */
function pairSize(task: Task, i: number): number {
  const p = task.train[i]!;
  return answerTextFor(p.input, 'compact').length + answerTextFor(p.output, 'compact').length;
}

function expectFits(result: Awaited<ReturnType<typeof fitTask>>): FitSuccess {
  if (!result.fits) throw new Error(`expected a fit, got ${result.error.message}`);
  return result;
}

describe('fitTask', () => {
  it('fits the views turned by 90° too: a wide task is longer transposed', async () => {
    const wide = (v: number) => [new Array<number>(12).fill(v), new Array<number>(12).fill(v)];
    const task: Task = {
      train: [1, 2, 3].map((v) => ({ input: wide(v), output: wide(v + 3) })),
      test: [{ input: wide(7) }],
    };
    // compact: a 2×12 grid is 2 × 13 characters, its transpose 12 × 3
    const given = buildInferencePrompt(task.train, task.test[0]!.input, 'compact').length;
    const maxSeqLen = given + answerTextFor(filledGrid(2, 12), 'compact').length + 1;
    const fit = expectFits(
      await fitTask(task, charCount, { format: 'compact', maxSeqLen, strategy: 'last-first' }),
    );
    expect(fit.kept.length).toBeLessThan(3); // all three fit only untransposed
    const asGiven = expectFits(
      await fitTask(task, charCount, { format: 'compact', maxSeqLen, transposed: false }),
    );
    expect(asGiven.kept).toEqual([0, 1, 2]);
    expect(fit.maxNewTokens).toBe(answerTextFor(filledGrid(12, 2), 'compact').length + 1);
    for (const transform of ALL_TRANSFORMS) {
      const view = applyAugmentation(task, { ...identityAugmentation(), transform, trainOrder: fit.kept });
      const answer = answerTextFor(filledGrid(...largestAnswerShape(view)), 'compact');
      const length =
        buildInferencePrompt(view.train, view.test[0]!.input, 'compact').length + answer.length + 1;
      expect(length, transform).toBeLessThanOrEqual(maxSeqLen);
    }
  });

  it('keeps every pair when the task fits, counting prompt + longest answer + EOS', async () => {
    const result = expectFits(await fitTask(MID, charCount, { format: 'compact', taskId: '007bbfb7' }));
    expect(result.kept).toEqual([0, 1, 2, 3, 4]);
    expect(result.dropped).toEqual([]);
    expect(result.taskId).toBe('007bbfb7');
    expect(result.tokens).toBe(compactTokens(MID, [0, 1, 2, 3, 4]));
    expect(result.tokensAllPairs).toBe(result.tokens);
    expect(result.answerShape).toEqual([9, 9]);
    expect(result.maxNewTokens).toBe(9 * 10 + 1);
  });

  it('takes the worst of several test inputs', async () => {
    expect(TWO_TESTS.test.length).toBeGreaterThan(1);
    const result = expectFits(await fitTask(TWO_TESTS, charCount, { format: 'compact' }));
    expect(result.tokens).toBe(compactTokens(TWO_TESTS, result.kept));
  });

  it('keeps the most pairs that fit, in original order, and one more would not fit', async () => {
    const all = compactTokens(MANY, [0, 1, 2, 3]);
    for (const strategy of ['random', 'largest-first', 'last-first'] as const) {
      const maxSeqLen = all - 1;
      const result = expectFits(await fitTask(MANY, charCount, { format: 'compact', maxSeqLen, strategy }));
      expect(result.tokens).toBeLessThanOrEqual(maxSeqLen);
      expect(result.tokens).toBe(compactTokens(MANY, result.kept));
      expect(result.tokensAllPairs).toBe(all);
      expect([...result.kept].sort((a, b) => a - b)).toEqual(result.kept);
      expect([...result.kept, ...result.dropped].sort()).toEqual([0, 1, 2, 3]);
      // Putting back the last dropped pair would overflow.
      const back = [...result.kept, result.dropped.at(-1)!].sort((a, b) => a - b);
      expect(compactTokens(MANY, back)).toBeGreaterThan(maxSeqLen);
    }
  });

  it('largest-first drops the largest pair first', async () => {
    const task = TWO_TESTS;
    const sizes = task.train.map((_, i) => pairSize(task, i));
    expect(new Set(sizes).size).toBeGreaterThan(2);
    const maxSeqLen = compactTokens(task, [0, 1, 2, 3, 4]);
    const result = expectFits(
      await fitTask(task, charCount, { format: 'compact', maxSeqLen, strategy: 'largest-first' }),
    );
    expect(result.dropped.length).toBeGreaterThan(1);
    expect(sizes[result.dropped[0]!]).toBe(Math.max(...sizes));
    for (const d of result.dropped)
      for (const k of result.kept) expect(sizes[d]!).toBeGreaterThanOrEqual(sizes[k]!);
  });

  it('last-first drops the last pair first (as arc24 does)', async () => {
    const maxSeqLen = compactTokens(MID, [0, 1, 2, 3]);
    const result = expectFits(
      await fitTask(MID, charCount, { format: 'compact', maxSeqLen, strategy: 'last-first' }),
    );
    expect(result.dropped).toEqual([4]);
    expect(result.kept).toEqual([0, 1, 2, 3]);
  });

  it('random is deterministic per seed and varies with it', async () => {
    const maxSeqLen = compactTokens(MID, [0, 1, 2]);
    const options = (seed: number): FitOptions => ({
      format: 'compact',
      maxSeqLen,
      seed,
      taskId: '007bbfb7',
    });
    const a = expectFits(await fitTask(MID, charCount, options(1)));
    const b = expectFits(await fitTask(MID, charCount, options(1)));
    expect(b.dropped).toEqual(a.dropped);
    const seen = new Set<string>();
    for (let seed = 0; seed < 12; seed++) {
      seen.add(expectFits(await fitTask(MID, charCount, options(seed))).dropped.join(','));
    }
    expect(seen.size).toBeGreaterThan(1);
  });

  it('gives the same answer with an async counter, in at most two calls', async () => {
    const calls: number[] = [];
    const asyncCount: CountTokens = async (texts) => {
      calls.push(texts.length);
      await new Promise((r) => setTimeout(r, 1));
      return texts.map((t) => t.length);
    };
    const options: FitOptions = {
      format: 'compact',
      maxSeqLen: compactTokens(MID, [0, 1]),
      strategy: 'last-first',
    };
    const sync = await fitTask(MID, charCount, options);
    const viaAsync = await fitTask(MID, asyncCount, options);
    expect(viaAsync).toEqual(sync);
    expect(sync.fits && sync.dropped).toEqual([4, 3, 2]);
    expect(calls.length).toBe(2);
  });

  it('reports a task that does not fit even with one pair', async () => {
    const result = await fitTask(BIG, charCount, { format: 'compact', maxSeqLen: 1000, taskId: '25094a63' });
    if (result.fits) throw new Error('expected too_long');
    expect(result.reason).toBe('too_long');
    expect(result.maxSeqLen).toBe(1000);
    expect(result.error).toBeInstanceOf(TaskTooLongError);
    expect(result.error.taskId).toBe('25094a63');
    expect(result.error.message).toContain('25094a63');
    // minTokens is the smallest pair's prompt: whatever the strategy, the smallest pair is the last kept.
    const sizes = BIG.train.map((_, i) => pairSize(BIG, i));
    const smallest = sizes.indexOf(Math.min(...sizes));
    expect(result.minTokens).toBe(compactTokens(BIG, [smallest]));
  });

  it('assumes a 30×30 answer with answerShape max', async () => {
    const estimate = expectFits(await fitTask(MID, charCount, { format: 'compact' }));
    const max = expectFits(await fitTask(MID, charCount, { format: 'compact', answerShape: 'max' }));
    expect(max.answerShape).toEqual([30, 30]);
    expect(max.maxNewTokens).toBe(30 * 31 + 1);
    expect(max.tokens - estimate.tokens).toBe(30 * 31 - 9 * 10);
  });

  it('counts the arc24 format with a real tokenizer when available', async () => {
    const qwen = await loadQwenTokenizer();
    if (qwen === undefined) return; // optional devDependency not installed
    const [n] = await qwen.countTokens(['```grid shape: 2x3\n1 012\n2 345\n```']);
    // Qwen splits digits individually: header tokens + one token per character of each row.
    expect(n).toBeGreaterThan(14);
    expect(qwen.encode('<|im_start|>')).toHaveLength(1);
    const chars = expectFits(await fitTask(MID, charCount, { format: 'arc24' }));
    const real = expectFits(await fitTask(MID, qwen.countTokens, { format: 'arc24' }));
    expect(real.tokens).toBeGreaterThan(0);
    // Grid text is one token per character, headings merge: Qwen needs fewer tokens than characters.
    expect(real.tokens).toBeLessThan(chars.tokens);
  });

  it('validates options, naming the option', async () => {
    for (const [options, path] of [
      [{ maxSeqLen: -1 }, 'maxSeqLen'],
      [{ maxSeqLen: 1.5 }, 'maxSeqLen'],
      [{ strategy: 'smallest' }, 'strategy'],
      [{ format: 'json' }, 'format'],
      [{ format: 'compact', style: 'chatml' }, 'style'],
      [{ answerShape: 'guess' }, 'answerShape'],
      [{ taskId: '../x' }, 'taskId'],
    ] as const) {
      const error = await fitTask(MID, charCount, options as FitOptions).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).path).toBe(path);
      expect((error as ValidationError).message).toContain('fitTask options');
    }
  });

  it('rejects a bad task and a bad counter', async () => {
    const bad = { train: [{ input: [[1, 2], [3]], output: [[0]] }], test: [{ input: [[0]] }] } as Task;
    await expect(fitTask(bad, charCount, { taskId: 'bad' })).rejects.toThrow(ValidationError);
    await expect(fitTask(MID, (texts) => texts.slice(1).map(() => 1))).rejects.toThrow(/counts for/);
    await expect(fitTask(MID, (texts) => texts.map(() => Number.NaN))).rejects.toThrow(ValidationError);
  });
});

describe('arc-ttft inspect', () => {
  const runInspect = (args: string[]) => runCommandInProcess(inspectCommand, args);

  const dir = mkdtempSync(join(tmpdir(), 'arc-ttft-inspect-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  for (const [id, task] of [
    ['007bbfb7', MID],
    ['25094a63', BIG],
    ['0d3d703e', MANY],
  ] as const) {
    writeFileSync(join(dir, `${id}.json`), JSON.stringify(task));
  }

  it('reports sizes, drops and tasks that do not fit, as JSON', async () => {
    const run = await runInspect([dir, '--max-seq-len', '4096', '--tokenizer', 'chars', '--json']);
    expect(run.exitCode).toBe(0);
    const report = JSON.parse(run.stdout) as {
      tokenizer: string;
      summary: { tasks: number; fitAllPairs: number; tooLong: string[] };
      tasks: {
        id: string;
        trainPairs: number;
        largestGrid: number[];
        fits: boolean;
        tokensAllPairs: number;
      }[];
    };
    expect(report.tokenizer).toBe('chars');
    expect(report.summary.tasks).toBe(3);
    expect(report.summary.tooLong).toEqual(['25094a63']);
    const big = report.tasks.find((t) => t.id === '25094a63')!;
    expect(big).toMatchObject({ trainPairs: 2, largestGrid: [30, 30], fits: false });
    const mid = report.tasks.find((t) => t.id === '007bbfb7')!;
    expect(mid.fits).toBe(true);
    expect(mid.tokensAllPairs).toBe(expectFits(await fitTask(MID, charCount, { maxSeqLen: 4096 })).tokens);
  });

  it('prints a table and a summary line; compact counts characters', async () => {
    const run = await runInspect([dir, '--format', 'compact', '--max-seq-len', '4096']);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain('007bbfb7');
    expect(run.stdout).toMatch(
      /3 tasks at max-seq-len 4096 \(compact, characters, largest-first\): .*0 do not fit/,
    );
  });

  it('reports the valid tasks of a folder with a bad one, counts the bad one in the summary, and exits 1', async () => {
    const mixed = join(dir, 'mixed');
    mkdirSync(mixed);
    writeFileSync(join(mixed, '007bbfb7.json'), JSON.stringify(MID));
    writeFileSync(join(mixed, 'broken01.json'), '{');
    const run = await runInspect([mixed, '--tokenizer', 'chars']);
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/^error: .*broken01\.json: invalid JSON/);
    expect(run.stdout).toContain('007bbfb7');
    expect(run.stdout).toMatch(/1 tasks at max-seq-len .*; 1 not loaded \(errors on stderr\)\n$/);
  });

  it('--model sizes what `arc-ttft run` does with that model: its format, its positions, random drops', async () => {
    expect(readModelFacts('embedded')).toMatchObject({ vocabSize: 259, maxPositions: 2048 });
    const run = await runInspect([dir, '--model', 'embedded', '--json']);
    expect(run.exitCode).toBe(0);
    const report = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      maxSeqLen: 2048,
      format: 'compact',
      tokenizer: 'chars',
      strategy: 'random',
    });
    // Flags still win over the model's defaults.
    const wide = JSON.parse(
      (await runInspect([dir, '--model', 'embedded', '--max-seq-len', '4096', '--json'])).stdout,
    );
    expect(wide).toMatchObject({ maxSeqLen: 4096, format: 'compact' });
    // The engine reads the same config keys for the positions (python/arc_ttft/model.py).
    const modelPy = readFileSync(join(ROOT, 'python', 'arc_ttft', 'model.py'), 'utf8');
    const keys = /_POSITION_KEYS = \(([^)]*)\)/.exec(modelPy)?.[1]?.match(/"(\w+)"/g);
    expect(keys?.map((k) => k.slice(1, -1))).toEqual(POSITION_KEYS);
    // A folder with no config.json is not a model.
    const notModel = await runInspect([dir, '--model', dir]);
    expect(notModel.exitCode).toBe(1);
    expect(notModel.stderr).toContain('no config.json');
  });

  it('fails with exit code 1 on a missing path, and rejects bad flags', async () => {
    const missing = await runInspect([join(dir, 'nope')]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toContain('nope');
    expect((await runInspect([dir, '--format', 'json'])).exitCode).not.toBe(0);
    expect((await runInspect([dir, '--max-seq-len', '-5'])).exitCode).not.toBe(0);
  });
});
