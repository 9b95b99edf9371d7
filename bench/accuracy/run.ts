/**
 * The accuracy study (issue #5) from the command line: the three modes of `runSingleTaskTTFT` on the
 * fixed task list, scored, written to `<out>/<setting>/…` and rendered to docs/results.md.
 *
 * ```sh
 * npx tsx bench/accuracy/run.ts                  # the full study (about 50 min on a quiet 2-core CPU)
 * npx tsx bench/accuracy/run.ts --dry-run        # what it would run, and the time estimate
 * npx tsx bench/accuracy/run.ts --limit 3 --steps 20 --results /tmp/results.md   # a quick look
 * npx tsx bench/accuracy/run.ts --render docs/results.json   # re-render the Markdown from the JSON
 * ```
 *
 * Progress goes to stderr; the summary table to stdout. Exit code 1 for bad input, 2 for usage errors.
 *
 * @module
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { ArcTtftError } from '../../src/errors.js';
import { renderResultsMarkdown } from './render.js';
import { MODES, planStudy, runAccuracyStudy, type StudyOptions, type StudyResults } from './study.js';

interface Flags {
  limit?: number;
  steps?: number;
  lr?: number;
  rank?: number;
  augmentations?: number;
  trainAugmentations?: number;
  trainEmbeddings?: boolean;
  model?: string;
  out?: string;
  results?: string;
  modes?: string[];
  seed?: number;
  threads?: number;
  python?: string;
  tasks?: string;
  data?: string;
  resume: boolean;
  dryRun?: boolean;
  render?: string;
}

function int(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('not an integer');
  return n;
}

function num(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError('not a number');
  return n;
}

function modes(value: string): string[] {
  const list = value.split(',').map((m) => m.trim());
  const bad = list.filter((m) => !(MODES as readonly string[]).includes(m));
  if (bad.length > 0)
    throw new InvalidArgumentError(`unknown mode(s) ${bad.join(', ')}; use ${MODES.join(',')}`);
  return list;
}

/** The flags as study options (only those given: the rest keep the study's defaults). */
export function flagsToOptions(f: Flags, command: string): StudyOptions {
  return {
    ...(f.limit !== undefined ? { limit: f.limit } : {}),
    ...(f.steps !== undefined ? { steps: f.steps } : {}),
    ...(f.lr !== undefined ? { lr: f.lr } : {}),
    ...(f.rank !== undefined ? { rank: f.rank } : {}),
    ...(f.augmentations !== undefined ? { augmentations: f.augmentations } : {}),
    ...(f.trainAugmentations !== undefined ? { trainAugmentations: f.trainAugmentations } : {}),
    ...(f.trainEmbeddings !== undefined ? { trainEmbeddings: f.trainEmbeddings } : {}),
    ...(f.model !== undefined ? { model: f.model } : {}),
    ...(f.out !== undefined ? { out: f.out } : {}),
    ...(f.results !== undefined ? { results: f.results } : {}),
    ...(f.modes !== undefined ? { modes: f.modes as StudyOptions['modes'] } : {}),
    ...(f.seed !== undefined ? { seed: f.seed } : {}),
    ...(f.threads !== undefined ? { threads: f.threads } : {}),
    ...(f.python !== undefined ? { pythonBin: f.python } : {}),
    ...(f.tasks !== undefined ? { tasksFile: f.tasks } : {}),
    ...(f.data !== undefined ? { data: f.data } : {}),
    resume: f.resume,
    command,
  };
}

function minutes(seconds: number): string {
  return `${(seconds / 60).toFixed(1)} min`;
}

/** The study's command (commander); `main` parses argv with it. */
export function accuracyCommand(
  argv: readonly string[] = [],
  onResult: (r: StudyResults | undefined) => void = () => {},
): Command {
  return new Command('bench:accuracy')
    .description(
      'accuracy study: single-task TTFT vs whole-set vs none on the fixed ARC-AGI-1 evaluation subset',
    )
    .option('--limit <n>', 'only the first n tasks of the list', int)
    .option('--steps <n>', 'training steps per task (whole-set: steps × tasks in all)', int)
    .option('--lr <x>', 'peak learning rate', num)
    .option('--rank <n>', 'LoRA rank (alpha = 2 × rank)', int)
    .option('--augmentations <n>', 'inference views per test input', int)
    .option('--train-augmentations <n>', 'augmented training samples per leave-one-out target', int)
    .option('--train-embeddings', 'also train the embeddings and output layer in full')
    .option('--model <name>', "base model: 'embedded', a folder or a Hugging Face id")
    .option('--out <dir>', 'root of the run folders (default .cache/accuracy)')
    .option('--results <file.md>', 'the Markdown report; the JSON goes beside it (default docs/results.md)')
    .option('--modes <list>', `comma-separated modes (default ${MODES.join(',')})`, modes)
    .option('--seed <n>', 'seed of every run', int)
    .option('--threads <n>', 'torch CPU threads', int)
    .option('--python <bin>', 'Python interpreter of the engine')
    .option('--tasks <file>', 'task list (default bench/accuracy/tasks.json)')
    .option('--data <dir>', 'ARC-AGI-1 evaluation folder')
    .option('--no-resume', 'start every mode over instead of continuing from the journals')
    .option('--dry-run', 'print what would run and the time estimate, run nothing')
    .option(
      '--render <results.json>',
      'only re-render the Markdown (--results, or beside the JSON) from a results JSON',
    )
    .action(async (flags: Flags) => {
      let interrupted = false;
      try {
        if (flags.render !== undefined) {
          const results = JSON.parse(readFileSync(flags.render, 'utf8')) as StudyResults;
          const md = resolve(flags.results ?? flags.render.replace(/\.json$/, '.md'));
          writeFileSync(md, renderResultsMarkdown(results));
          process.stdout.write(`wrote ${md}\n`);
          onResult(results);
          return;
        }
        const quoted = argv.map((a) => (/^[\w./:=,+-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`));
        const command = ['npx tsx bench/accuracy/run.ts', ...quoted].join(' ');
        const options = flagsToOptions(flags, command);
        if (flags.dryRun) {
          const plan = await planStudy(options);
          const o = plan.options;
          process.stdout.write(
            `${plan.ids.length} tasks × ${o.modes.join(', ')}; ${o.steps} steps/task, lr ${o.lr}, rank ${o.rank}, ${o.augmentations} views\n` +
              `folder: ${plan.dir}\n` +
              `left to run: ${o.modes.map((m) => `${m} ${plan.todo[m].length}`).join(', ')}\n` +
              `estimate: ${minutes(plan.estimateSeconds)} (quiet 2-core CPU, embedded model)\n`,
          );
          onResult(undefined);
          return;
        }
        // Ctrl-C stops the task in flight; the journals keep every finished task, so the same command resumes.
        const controller = new AbortController();
        const stop = () => {
          interrupted = true;
          controller.abort();
        };
        process.on('SIGINT', stop);
        let results: StudyResults;
        try {
          results = await runAccuracyStudy(options, {
            log: (line) => process.stderr.write(`${line}\n`),
            signal: controller.signal,
          });
        } finally {
          process.off('SIGINT', stop);
        }
        const rows = results.modes.map(
          (m) =>
            `${m.mode.padEnd(12)} vote_2 ${(100 * m.metrics.vote2).toFixed(1).padStart(5)}%  accuracy ${(100 * m.metrics.accuracy).toFixed(1).padStart(5)}%  ` +
            `pass_n ${(100 * m.metrics.passN).toFixed(1).padStart(5)}%  correct_size ${(100 * m.metrics.correctSize).toFixed(1).padStart(5)}%  ${minutes(m.seconds)}`,
        );
        process.stdout.write(`${rows.join('\n')}\n\nwrote ${results.options.results} and its .json\n`);
        onResult(results);
      } catch (error) {
        if (!(error instanceof ArcTtftError)) throw error;
        process.stderr.write(`error: ${error.message}\n`);
        // 130: stopped by Ctrl-C (as `arc-ttft run`); 1: bad input.
        process.exitCode = interrupted ? 130 : 1;
        onResult(undefined);
      }
    });
}

/**
 * Runs the study with command-line flags (`argv` without the node and script paths); resolves to its
 * results, or `undefined` for `--dry-run` and errors (then `process.exitCode` is set).
 */
export async function main(argv: readonly string[]): Promise<StudyResults | undefined> {
  let out: StudyResults | undefined;
  const cmd = accuracyCommand(argv, (r) => {
    out = r;
  });
  try {
    await cmd.exitOverride().parseAsync([...argv], { from: 'user' });
  } catch (error) {
    const code = (error as { exitCode?: number }).exitCode;
    if (code === undefined) throw error;
    // --help exits 0; usage errors 2.
    process.exitCode = code === 0 ? 0 : 2;
  }
  return out;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main(process.argv.slice(2));
}
