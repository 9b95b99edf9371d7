import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { scoreCommand } from '../src/cli/commands/score.js';
import type { Solutions, Submission } from '../src/schemas.js';
import type { ScoreReport } from '../src/score.js';
import { type CommandRun, HAS_SHARED_DATA, KAGGLE, runCommandInProcess } from './helpers.js';

/** Runs `arc-ttft score <args>` in-process, capturing what it writes and its exit code. */
function runScore(args: string[]): Promise<CommandRun> {
  return runCommandInProcess(scoreCommand, args);
}

describe.skipIf(!HAS_SHARED_DATA)('arc-ttft score', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arc-ttft-score-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const solutionsPath = join(KAGGLE, 'arc-agi_evaluation_solutions.json');
  const solutions = JSON.parse(readFileSync(solutionsPath, 'utf8')) as Solutions;
  const asSubmission = (sol: Solutions): Submission =>
    Object.fromEntries(
      Object.entries(sol).map(([id, outs]) => [id, outs.map((o) => ({ attempt_1: o, attempt_2: o }))]),
    );
  const write = (name: string, value: unknown): string => {
    const path = join(dir, name);
    writeFileSync(path, JSON.stringify(value));
    return path;
  };
  const perfectPath = write('perfect.json', asSubmission(solutions));

  it('prints a table with the score for the solutions as submission', async () => {
    const run = await runScore(['--submission', perfectPath, '--solutions', solutionsPath]);
    expect(run.exitCode).toBe(0);
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain('Kaggle score: 1.0000 (100.00%)');
    expect(run.stdout).toMatch(/^vote2\s+100\.0%/m);
  });

  it('--json prints only the report as JSON', async () => {
    const run = await runScore(['-s', perfectPath, '--solutions', solutionsPath, '--json']);
    expect(run.exitCode).toBe(0);
    const report = JSON.parse(run.stdout) as ScoreReport;
    expect(report.score).toBe(1);
    expect(report.nTasks).toBe(Object.keys(solutions).length);
    expect(report.metrics.accuracy).toBe(1);
  });

  // A small case: three tasks; the submission answers the first two, one of them wrongly.
  const ids = Object.keys(solutions).slice(0, 3);
  const small: Solutions = Object.fromEntries(ids.map((id) => [id, solutions[id]!]));
  const smallPath = write('small-solutions.json', small);
  const partial = asSubmission(Object.fromEntries(ids.slice(0, 2).map((id) => [id, small[id]!])));
  const wrong = [[0]];
  partial[ids[1]!] = partial[ids[1]!]!.map(() => ({ attempt_1: wrong, attempt_2: wrong }));
  const partialPath = write('partial.json', partial);

  it('fails with exit code 1 naming the file, the missing task and the flag that scores it as wrong', async () => {
    const run = await runScore(['--submission', partialPath, '--solutions', smallPath]);
    expect(run.exitCode).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      `error: ${partialPath}: task "${ids[2]}" is missing (the solutions have 1 test output(s) for it) (--allow-missing scores what is missing as wrong)\n`,
    );
  });

  it('--allow-missing scores missing tasks as wrong; --per-task adds task rows', async () => {
    const json = await runScore(['-s', partialPath, '--solutions', smallPath, '--allow-missing', '--json']);
    expect(json.exitCode).toBe(0);
    const report = JSON.parse(json.stdout) as ScoreReport;
    expect(report.score).toBeCloseTo(1 / 3, 12);
    expect(report.unanswered.map((u) => u.taskId)).toEqual(small[ids[2]!]!.map(() => ids[2]));

    const table = await runScore([
      '-s',
      partialPath,
      '--solutions',
      smallPath,
      '--allow-missing',
      '--per-task',
    ]);
    expect(table.exitCode).toBe(0);
    for (const id of ids) expect(table.stdout).toMatch(new RegExp(`^${id}\\s`, 'm'));
  });

  it('reports a missing file with exit code 1 and a missing option as a usage error', async () => {
    const missing = await runScore(['-s', join(dir, 'nope.json'), '--solutions', smallPath]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toContain('nope.json');
    const usage = await runScore(['-s', partialPath]);
    expect(usage.exitCode).not.toBe(0);
    expect(usage.stderr).toContain('--solutions');
  });
});
