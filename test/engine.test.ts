/**
 * The engine end to end on CPU with a tiny random model: learning, in-place reset, typed Python errors,
 * crash and timeout recovery, clean exit. Needs the project venv (npm test sets ARC_TTFT_PYTHON).
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  ArcTtftError,
  BridgeError,
  buildInferencePrompt,
  buildTrainingText,
  createEngine,
  Engine,
  fineTuneTask,
  type Grid,
  gridsEqual,
  predictTask,
  type Task,
  TaskTooLongError,
  TimeoutError,
  ValidationError,
  vocabKeepSet,
} from '../src/index.js';
import { createRng } from '../src/rng.js';
import { PY, ROOT, useTinyEngine } from './helpers.js';

/** A task whose answer is one fixed grid whatever the input: a random base cannot guess it, a LoRA learns it fast. */
function constantTask(seed: number, answer: Grid, nTrain = 4): Task {
  const rng = createRng(seed);
  const grid = (): Grid => Array.from({ length: 3 }, () => Array.from({ length: 3 }, () => rng.int(10)));
  return {
    train: Array.from({ length: nTrain }, () => ({ input: grid(), output: answer })),
    test: [{ input: grid(), output: answer }],
  };
}

const ANSWER_A: Grid = [
  [1, 2, 1],
  [2, 1, 2],
];
const ANSWER_B: Grid = [
  [3, 4, 3],
  [4, 3, 4],
];
// No geometric or colour augmentation: a random base has no copy skill, so the answer must stay constant.
const TUNE = {
  steps: 100,
  lr: 2e-3,
  transforms: ['identity' as const],
  colourPermutation: 'none' as const,
  seed: 1,
};
const PREDICT = { augmentations: 2, transforms: ['identity' as const], colourPermutation: 'none' as const };

const fixture = useTinyEngine('engine', {
  lora: { r: 16, alpha: 32, modulesToSave: ['embed_tokens', 'lm_head'] },
});

describe('engine', () => {
  it('loads the model once and reports it', () => {
    expect(fixture.engine.model.modelType).toBe('qwen2');
    expect(fixture.engine.model.attention).toBe('sdpa'); // 'auto': transformers' choice
    expect(fixture.engine.model.vocabSize).toBeLessThan(512);
    expect(fixture.engine.format).toBe('compact');
    expect(fixture.engine.maxSeqLen).toBe(8192);
  });

  it('learns: predictTask is wrong before fineTuneTask and right after', async () => {
    const task = constantTask(7, ANSWER_A);
    const before = await predictTask(fixture.engine, task, { taskId: 'const-a', ...PREDICT });
    const b = before.tests[0]!;
    expect(b.attempt1 === null || !gridsEqual(b.attempt1, ANSWER_A)).toBe(true);

    const tuned = await fineTuneTask(fixture.engine, task, { taskId: 'const-a', ...TUNE });
    expect(tuned.steps).toBe(100);
    expect(tuned.losses).toHaveLength(100);
    expect(tuned.keptTrain).toEqual([0, 1, 2, 3]);
    const first = tuned.losses[0]!;
    const last = tuned.losses.at(-1)!;
    expect(last).toBeLessThan(first / 4);

    const after = await predictTask(fixture.engine, task, { taskId: 'const-a', ...PREDICT });
    expect(after.tests[0]!.status).toBe('ok');
    expect(after.tests[0]!.attempt1).toEqual(ANSWER_A);
  });

  it('resets in place: a task trains and predicts the same whether or not another task came first', async () => {
    const taskA = constantTask(7, ANSWER_A);
    const taskB = constantTask(11, ANSWER_B);
    const pid = fixture.engine.pythonPid;

    const b1 = await fineTuneTask(fixture.engine, taskB, { taskId: 'const-b', ...TUNE });
    const p1 = await predictTask(fixture.engine, taskB, { taskId: 'const-b', ...PREDICT });
    await fineTuneTask(fixture.engine, taskA, { taskId: 'const-a', ...TUNE });
    const b2 = await fineTuneTask(fixture.engine, taskB, { taskId: 'const-b', ...TUNE });
    const p2 = await predictTask(fixture.engine, taskB, { taskId: 'const-b', ...PREDICT });

    expect(b2.losses).toEqual(b1.losses);
    expect(p2.tests).toEqual(p1.tests);
    expect(p1.tests[0]!.attempt1).toEqual(ANSWER_B);
    // No model reload in between: still the same Python process.
    expect(fixture.engine.pythonPid).toBe(pid);
  });

  it('surfaces a Python exception as a typed BridgeError with its traceback', async () => {
    const error = await fixture.engine.call('debug_raise', { message: 'boom' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BridgeError);
    const e = error as BridgeError;
    expect(e.reason).toBe('exception');
    expect(e.pythonType).toBe('ValueError');
    expect(e.pythonMessage).toBe('boom');
    expect(e.traceback).toContain('Traceback');
    expect(e.message).toContain('ValueError: boom');
  });

  it('rejects a bad payload with the Python error type and the field', async () => {
    const error = await fixture.engine.call('train', { steps: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BridgeError);
    expect((error as BridgeError).pythonType).toBe('PayloadError');
    expect((error as BridgeError).message).toContain('samples');
  });

  it('raises TaskTooLongError when one train pair does not fit maxSeqLen', async () => {
    const task = constantTask(3, ANSWER_A);
    await expect(
      fineTuneTask(fixture.engine, task, { taskId: 'short', maxSeqLen: 20, steps: 1 }),
    ).rejects.toBeInstanceOf(TaskTooLongError);
  });

  it('notices a killed Python within 5 s, and the next call works after a restart', async () => {
    const task = constantTask(5, ANSWER_A);
    const pid = fixture.engine.pythonPid!;
    const starts = fixture.engine.startCount;
    const running = fineTuneTask(fixture.engine, task, { taskId: 'killed', ...TUNE, steps: 100_000 }).catch(
      (e: unknown) => e,
    );
    await new Promise((r) => setTimeout(r, 1500));
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    const error = await running;
    expect(Date.now() - killedAt).toBeLessThan(5000);
    expect(error).toBeInstanceOf(BridgeError);
    expect((error as BridgeError).reason).toBe('crashed');

    const next = await predictTask(fixture.engine, task, { taskId: 'killed', ...PREDICT });
    expect(next.tests).toHaveLength(1);
    expect(fixture.engine.startCount).toBe(starts + 1);
    expect(fixture.engine.pythonPid).not.toBe(pid);
  }, 120_000);

  it('times out a call that runs too long, then recovers', async () => {
    const task = constantTask(5, ANSWER_A);
    const error = await fineTuneTask(fixture.engine, task, {
      taskId: 'slow',
      ...TUNE,
      steps: 100_000,
      timeoutMs: 2000,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error).toBeInstanceOf(ArcTtftError);
    const next = await predictTask(fixture.engine, task, { taskId: 'slow', ...PREDICT });
    expect(next.tests[0]!.predictions).toHaveLength(2);
  }, 120_000);

  it('loads the attention implementation asked for, and says which one a machine cannot run', async () => {
    const eager = await createEngine({ model: fixture.model, attention: 'eager', threads: 1, ...PY });
    try {
      expect(eager.model.attention).toBe('eager');
      const tuned = await fineTuneTask(eager, constantTask(7, ANSWER_A), { ...TUNE, steps: 2, batchSize: 2 });
      expect(tuned.losses).toHaveLength(2);
    } finally {
      await eager.close();
    }
    const bad = await createEngine({ model: fixture.model, attention: 'flash' as 'eager', ...PY }).catch(
      (e: unknown) => e,
    );
    expect(bad).toBeInstanceOf(ValidationError);
    expect((bad as ValidationError).path).toBe('attention');
    // flash-attn is not installed on these machines: a typed error from Python, before any task runs.
    const flash = await createEngine({ model: fixture.model, attention: 'flash_attention_2', ...PY }).catch(
      (e: unknown) => e,
    );
    if (flash instanceof Engine) {
      await flash.close(); // a machine with flash-attn: nothing to check here
    } else {
      expect(flash).toBeInstanceOf(BridgeError);
      expect((flash as BridgeError).pythonType).toBe('AttentionUnavailableError');
      expect((flash as BridgeError).message).toContain('flash_attention_2');
    }
  }, 120_000);

  it('fails the start when the model does not load within loadTimeoutMs', async () => {
    const error = await createEngine({ model: fixture.model, loadTimeoutMs: 50, ...PY }).catch(
      (e: unknown) => e,
    );
    // createEngine reports a failed load as itself (a restart's would be the cause of a start_failed BridgeError).
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as TimeoutError).operation).toBe('load_model');
    expect((error as TimeoutError).timeoutMs).toBe(50);
  }, 120_000);

  it('fails up front with a clear error when the model folder does not exist', async () => {
    const missing = join(fixture.dir, 'no-such-model');
    const error = await createEngine({ model: missing, ...PY }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ArcTtftError);
    expect(String((error as Error).message)).toContain('no-such-model');
  }, 120_000);
});

describe('reduced vocabulary', () => {
  it('keeps every character any format can produce, and the engine trains and predicts with it', async () => {
    const keep = vocabKeepSet();
    const allowed = new Set([...keep.keepChars, ...keep.keepTexts.join('')]);
    const task = constantTask(7, ANSWER_A);
    for (const format of ['arc24', 'compact'] as const) {
      const t = buildTrainingText(task.train.slice(1), task.train[0]!, format);
      for (const ch of t.text) expect(allowed.has(ch), `${format}: ${JSON.stringify(ch)}`).toBe(true);
    }

    const reduced = await createEngine({
      model: fixture.model,
      threads: 1,
      reduceVocab: true,
      lora: { modulesToSave: ['embed_tokens', 'lm_head'] },
      ...PY,
    });
    try {
      expect(reduced.model.reducedVocab).toBe(true);
      expect(reduced.model.vocabSize).toBeLessThan(reduced.model.fullVocabSize);
      // Same tokens as the full tokenizer: the budget does not change.
      const prompt = buildInferencePrompt(task.train, task.test[0]!.input, 'compact');
      expect(await reduced.countTokens([prompt])).toEqual(await fixture.engine.countTokens([prompt]));
      const tuned = await fineTuneTask(reduced, task, { taskId: 'const-a', ...TUNE });
      expect(tuned.losses.at(-1)!).toBeLessThan(tuned.losses[0]! / 4);
      // Generation stays inside the kept tokens: every view parses as a grid.
      const after = await predictTask(reduced, task, { taskId: 'const-a', ...PREDICT });
      expect(after.tests[0]!.failures).toEqual([]);
      expect(after.tests[0]!.status).toBe('ok');
    } finally {
      await reduced.close();
    }
  }, 180_000);
});

describe('process lifetime', () => {
  it('Node exits by itself after engine.close()', async () => {
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const child = spawn(
      process.execPath,
      ['--import', tsx, join(ROOT, 'test/fixtures/node/engine-child.ts'), fixture.model],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: process.env },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += String(d);
    });
    child.stderr.on('data', (d) => {
      err += String(d);
    });
    const code = await new Promise<number | null>((resolveExit) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolveExit(c);
      });
    });
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out).toContain('closed');
    const { pythonPid } = JSON.parse(out.split('\n')[0]!) as { pythonPid: number };
    expect(() => process.kill(pythonPid, 0)).toThrow();
  }, 120_000);
});
