/**
 * Runs every `examples/*.ts` script as a child process (`npx tsx`), as a user would, and checks that it
 * exits 0 and prints what it should. Scripts whose first lines hold `// example: needs-engine` need the
 * Python engine and run only when `ARC_TTFT_PYTHON` is set.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

const EXAMPLES_DIR = join(ROOT, 'examples');
const NEEDS_ENGINE = '// example: needs-engine';
/** How many leading lines may hold the marker. */
const MARKER_LINES = 10;
const HAS_ENGINE = (process.env.ARC_TTFT_PYTHON ?? '') !== '';

/**
 * Text each example must print, by file name. An example without an entry must at least print
 * something; add one here when adding an example.
 */
const EXPECTED: Record<string, readonly (string | RegExp)[]> = {
  'data-layer.ts': [
    'loaded 6 tasks (challenges)',
    'bad task rejected: (object): task "broken": train[0].input[1]: ragged grid',
    /kept pairs 0, 1 \(dropped 2\)/,
    'parses back: true',
    '"reason":"unterminated"',
    /\d+ samples; sample 2: target pair \d/,
    '6 vote(s) for 334|701|701',
    'attempt 1 is the solution: true',
    'submission: 6 tasks, 5 entries filled by the fallback',
    'Kaggle score: 0.1667 (16.67%) over 6 task(s), 6 test output(s)',
  ],
  'fine-tune-one-task.ts': [
    /tiny model: \d+ parameters/,
    /engine: qwen2, \d+ trainable of \d+ parameters, cpu float32, format compact, maxSeqLen 8192/,
    /constant task: 24 samples, loss [\d.]+ → [\d.]+ over 100 steps/,
    'constant task after: attempt 1 121|212',
    'constant task: attempt 1 is right: true',
    /sample task 68b67ca3: 96 samples from train pairs 0,1,2, loss [\d.]+ → [\d.]+ over 200 steps/,
    /sample task 68b67ca3: 8 views, \d+ distinct grid\(s\), \d+ unparsable/,
    'sample task 68b67ca3: solution 334|701|701; solved: ',
    /same Python process for both tasks: pid \d+, starts 1/,
    'engine closed',
  ],
  'run-folder.ts': [
    'split 6 tasks into 6 files',
    /run_started: single-task, 3 tasks, 0 resumed, 0 invalid; model qwen2 on cpu/,
    /task_started: 4cd1b7b2 \(3 to go\), 4 steps, 2 views/,
    /train_step: 4cd1b7b2 step 4\/4 loss [\d.]+/,
    /task_finished: 3\/3 68b67ca3 done, 4 steps/,
    'run_finished: 3 records',
    'statuses: 3 done',
    'submission: 3 tasks, 3/3 test inputs with two attempts',
    /Kaggle score: \d\.\d{4}/,
    'aborted: false',
    'out: metrics.json, report.html, results.jsonl, submission.json',
  ],
  'several-tasks-one-batch.ts': [
    /one batch: 6 sequences of 3 tasks, \d+ tokens/,
    /const1: attempt 1 .*; right: (true|false); same as alone: true/,
    /const3: attempt 1 .*; right: (true|false); same as alone: true/,
    /const5: attempt 1 .*; right: (true|false); same as alone: true/,
  ],
  'fast-paths.ts': [
    'attention: sdpa',
    'const1: 40 steps of 4 samples, compiled its graphs',
    'const3: 40 steps of 4 samples, reused the graphs',
    'const5: 40 steps of 4 samples, reused the graphs',
    'const1: 2 views decoded compiled; same votes as the dynamic loop: true',
    'const3: 2 views decoded compiled; same votes as the dynamic loop: true',
    'const5: 2 views decoded compiled; same votes as the dynamic loop: true',
  ],
  'compare-modes.ts': [
    '4 tasks; single-task: 40 steps per task; whole-set: 160 steps in all; none: 0 steps',
    'ran single-task: 4/4 tasks done',
    'ran whole-set: 4/4 tasks done',
    'ran none: 4/4 tasks done',
    /mode {9}score {2}accuracy {2}seconds/,
    /single-task {2}\d\.\d{3} {2}[\d.]+% +[\d.]+/,
    /whole-set {4}\d\.\d{3} {2}[\d.]+% +[\d.]+/,
    /none {9}\d\.\d{3} {2}[\d.]+% +[\d.]+/,
  ],
};

interface Example {
  readonly file: string;
  readonly needsEngine: boolean;
}

function listExamples(): Example[] {
  return readdirSync(EXAMPLES_DIR)
    .filter((name) => name.endsWith('.ts'))
    .sort()
    .map((file) => {
      const head = readFileSync(join(EXAMPLES_DIR, file), 'utf8').split('\n').slice(0, MARKER_LINES);
      return { file, needsEngine: head.some((line) => line.trim() === NEEDS_ENGINE) };
    });
}

interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runExample(file: string, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      'npx',
      ['tsx', join('examples', file)],
      { cwd: ROOT, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: process.env },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const examples = listExamples();

describe('examples', () => {
  it('finds the data-layer example', () => {
    expect(examples.map((e) => e.file)).toContain('data-layer.ts');
  });

  for (const { file, needsEngine } of examples) {
    const timeoutMs = needsEngine ? 600_000 : 60_000;
    it.skipIf(needsEngine && !HAS_ENGINE)(
      `${file} runs and exits 0${needsEngine ? ' (needs the engine: set ARC_TTFT_PYTHON)' : ''}`,
      async () => {
        const { code, stdout, stderr } = await runExample(file, timeoutMs);
        expect(code, `stderr:\n${stderr}`).toBe(0);
        const expected = EXPECTED[file];
        if (expected === undefined) expect(stdout.trim()).not.toBe('');
        for (const text of expected ?? []) {
          if (typeof text === 'string') expect(stdout).toContain(text);
          else expect(stdout).toMatch(text);
        }
      },
      timeoutMs + 10_000,
    );
  }
});
