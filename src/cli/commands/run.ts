/**
 * `arc-ttft run`: test-time fine-tuning over a task set, with progress, a resumable journal, the
 * submission, metrics and the HTML report in the output folder.
 *
 * @module
 */
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { ArcTtftError, ValidationError } from '../../errors.js';
import { sampleDataDir } from '../../paths.js';
import { formatScoreTable } from '../../score.js';
import { AttentionSchema } from '../../ttft/engine.js';
import { type RunOptions, runSingleTaskTTFT } from '../../ttft/run.js';
import {
  deviceName,
  nonEmpty,
  parseDuration,
  positiveInt,
  positiveNumber,
  printError,
  seed,
} from '../args.js';
import { RunProgress } from '../progress.js';

interface RunFlags {
  tasks?: string;
  solutions?: string;
  model: string;
  out: string;
  mode: 'single-task' | 'whole-set' | 'none';
  steps?: number;
  trainBatch?: number;
  lr?: number;
  loraRank?: number;
  loraAlpha?: number;
  trainEmbeddings?: boolean;
  maxSeqLen?: number;
  format?: 'arc24' | 'compact';
  augmentations?: number;
  trainAugmentations?: number;
  tasksPerBatch?: number;
  decode?: 'dynamic' | 'static' | 'compiled';
  compileTrain?: boolean;
  taskTimeout?: number;
  timeBudget?: number;
  limit?: number;
  only?: string[];
  seed?: number;
  device?: string;
  dtype?: 'auto' | 'float32' | 'bfloat16' | 'float16';
  attention?: (typeof AttentionSchema.options)[number];
  backend?: 'transformers' | 'vllm';
  threads?: number;
  python?: string;
  resume: boolean;
  retryFailed?: boolean;
  fallback?: 'input' | 'zeros';
  saveAdapters?: boolean;
  ray?: string;
  workers?: number;
  json?: boolean;
  verbose?: boolean;
}

/** Maps CLI flags to {@link RunOptions} (only the flags given; the library's defaults do the rest). */
export function runOptionsFromFlags(flags: RunFlags): RunOptions {
  const train: NonNullable<RunOptions['train']> = {};
  if (flags.steps !== undefined) train.steps = flags.steps;
  if (flags.trainBatch !== undefined) train.batchSize = flags.trainBatch;
  if (flags.lr !== undefined) train.lr = flags.lr;
  if (flags.trainAugmentations !== undefined) train.augmentationsPerPair = flags.trainAugmentations;
  if (flags.compileTrain) train.compile = true;
  const predict: NonNullable<RunOptions['predict']> = {};
  if (flags.augmentations !== undefined) predict.augmentations = flags.augmentations;
  if (flags.decode !== undefined) predict.decode = flags.decode;
  const lora: NonNullable<NonNullable<RunOptions['engine']>['lora']> = {};
  if (flags.loraRank !== undefined) lora.r = flags.loraRank;
  if (flags.loraAlpha !== undefined) lora.alpha = flags.loraAlpha;
  if (flags.trainEmbeddings) lora.modulesToSave = ['embed_tokens', 'lm_head'];
  const engine: NonNullable<RunOptions['engine']> = { model: flags.model, lora };
  if (flags.device !== undefined) engine.device = flags.device;
  if (flags.dtype !== undefined) engine.dtype = flags.dtype;
  if (flags.attention !== undefined) engine.attention = flags.attention;
  if (flags.backend !== undefined) engine.backend = flags.backend;
  if (flags.threads !== undefined) engine.threads = flags.threads;
  if (flags.python !== undefined) engine.pythonBin = flags.python;
  return {
    mode: flags.mode,
    out: flags.out,
    engine,
    train,
    predict,
    resume: flags.resume,
    ...(flags.retryFailed === false ? { retryFailed: false } : {}),
    ...(flags.solutions !== undefined ? { solutions: flags.solutions } : {}),
    ...(flags.maxSeqLen !== undefined ? { maxSeqLen: flags.maxSeqLen } : {}),
    ...(flags.format !== undefined ? { format: flags.format } : {}),
    ...(flags.taskTimeout !== undefined ? { taskTimeoutMs: Math.round(flags.taskTimeout * 1000) } : {}),
    ...(flags.timeBudget !== undefined ? { timeBudgetMs: Math.round(flags.timeBudget * 1000) } : {}),
    ...(flags.limit !== undefined ? { limit: flags.limit } : {}),
    ...(flags.tasksPerBatch !== undefined ? { tasksPerBatch: flags.tasksPerBatch } : {}),
    ...(flags.only !== undefined ? { only: flags.only } : {}),
    ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
    ...(flags.fallback !== undefined ? { fallback: flags.fallback } : {}),
    ...(flags.saveAdapters ? { saveAdapters: true } : {}),
    // --workers alone means Ray with its default address.
    ...(flags.ray !== undefined || flags.workers !== undefined
      ? {
          ray: {
            address: flags.ray ?? 'auto',
            ...(flags.workers !== undefined ? { workers: flags.workers } : {}),
          },
        }
      : {}),
  };
}

/** What `run --json` prints: one object, the same keys whether the run finished, stopped, or never started. */
interface JsonSummary {
  readonly mode: string;
  readonly aborted: boolean;
  /** Tasks not run; `null` when the run stopped before it knew how many there were. */
  readonly notRun: number | null;
  readonly statusCounts: Readonly<Record<string, number>>;
  readonly score: number | null;
  readonly metrics: unknown;
  readonly seconds: number;
  readonly files: unknown;
}

function printJsonSummary(summary: JsonSummary): void {
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
}

/** The flag behind each option path `runOptionsFromFlags` fills, so an option error names what the user typed. */
const FLAG_OF_OPTION: Readonly<Record<string, string>> = {
  solutions: '--solutions',
  out: '--out',
  mode: '--mode',
  maxSeqLen: '--max-seq-len',
  format: '--format',
  taskTimeoutMs: '--task-timeout',
  timeBudgetMs: '--time-budget',
  limit: '--limit',
  tasksPerBatch: '--tasks-per-batch',
  only: '--only',
  seed: '--seed',
  fallback: '--fallback',
  retryFailed: '--no-retry-failed',
  'train.steps': '--steps',
  'train.batchSize': '--train-batch',
  'train.lr': '--lr',
  'train.augmentationsPerPair': '--train-augmentations',
  'train.compile': '--compile-train',
  'predict.augmentations': '--augmentations',
  'predict.decode': '--decode',
  'engine.model': '--model',
  'engine.device': '--device',
  'engine.dtype': '--dtype',
  'engine.attention': '--attention',
  'engine.backend': '--backend',
  'engine.threads': '--threads',
  'engine.pythonBin': '--python',
  'engine.lora.r': '--lora-rank',
  'engine.lora.alpha': '--lora-alpha',
  'engine.lora.modulesToSave': '--train-embeddings',
  'ray.address': '--ray',
  'ray.workers': '--workers',
};

/**
 * `--only: task id "x" is not in …` for an error about an option a flag set, instead of the library's
 * `runSingleTaskTTFT options: only: …`; undefined for any other error.
 */
export function flagErrorMessage(error: unknown): string | undefined {
  if (!(error instanceof ValidationError)) return undefined;
  // The engine's options are checked again by createEngine, under their own name.
  const prefix = { 'runSingleTaskTTFT options': '', 'createEngine options': 'engine.' }[error.source ?? ''];
  if (prefix === undefined) return undefined;
  const lines = error.issues.map((issue) => {
    const flag = FLAG_OF_OPTION[prefix + issue.path.replace(/\[\d+\]$/, '')];
    return flag !== undefined ? `${flag}: ${issue.message}` : undefined;
  });
  return lines.every((l) => l !== undefined) ? lines.join('\n') : undefined;
}

/** Builds the `run` subcommand. */
export function runCommand(): Command {
  return new Command('run')
    .description(
      'fine-tune on each task and predict it; write submission.json, results.jsonl, metrics.json, report.html',
    )
    .option(
      '-t, --tasks <path>',
      'Kaggle challenges file, folder of <id>.json, or one task file (default: the bundled sample tasks)',
      nonEmpty,
    )
    .option('-s, --solutions <file>', 'Kaggle solutions file, for metrics', nonEmpty)
    .option('-m, --model <model>', 'model folder, Hugging Face id, or "embedded"', nonEmpty, 'embedded')
    .option('-o, --out <dir>', 'output folder (a run there resumes)', nonEmpty, 'arc-ttft-run')
    .addOption(
      new Option('--mode <mode>', 'single-task, whole-set, or none (base model)')
        .choices(['single-task', 'whole-set', 'none'])
        .default('single-task'),
    )
    .option('--steps <n>', 'training steps per task (default 300)', positiveInt)
    .option(
      '--train-batch <n>',
      'training samples per step, packed into rows (default 1; more fills a GPU)',
      positiveInt,
    )
    .option('--lr <lr>', 'peak learning rate (default 1e-4)', positiveNumber)
    .option('--lora-rank <r>', 'LoRA rank (default 16)', positiveInt)
    .option('--lora-alpha <alpha>', 'LoRA alpha (default 32)', positiveNumber)
    .option('--train-embeddings', 'also train the embeddings and output layer (helps small models)')
    .option(
      '--max-seq-len <n>',
      'longest prompt + answer in tokens (default: the model’s, ≤ 8192)',
      positiveInt,
    )
    .addOption(
      new Option('--format <format>', 'grid format (default: by vocabulary)').choices(['arc24', 'compact']),
    )
    .option('--augmentations <n>', 'inference views per test input (default 8)', positiveInt)
    .option(
      '--train-augmentations <n>',
      'augmented samples per leave-one-out target (default 32)',
      positiveInt,
    )
    .option(
      '--tasks-per-batch <n>',
      'tasks whose views are generated in one batch, each with its own adapter (default 1; more fills a GPU better)',
      positiveInt,
    )
    .addOption(
      new Option(
        '--decode <kind>',
        'decoding loop: dynamic (default), static (fixed-shape steps, static KV cache) or compiled (static + torch.compile)',
      ).choices(['dynamic', 'static', 'compiled']),
    )
    .option(
      '--compile-train',
      'torch.compile the training forward pass (compiles once per process; see docs/performance.md for when it pays)',
    )
    .option('--task-timeout <duration>', 'time limit per task, e.g. 30m (default 30m)', parseDuration)
    .option(
      '--time-budget <duration>',
      'total time budget, e.g. 12h: steps and views shrink to fit',
      parseDuration,
    )
    .option('--limit <n>', 'run at most n tasks', positiveInt)
    .option('--only <ids...>', 'run only these task ids')
    .option('--seed <n>', 'seed, 0 to 2^32 - 1 (default 0)', seed)
    .option('--device <device>', 'auto, cpu, cuda or cuda:N (default auto)', deviceName)
    .addOption(
      new Option('--dtype <dtype>', 'weights dtype').choices(['auto', 'float32', 'bfloat16', 'float16']),
    )
    .addOption(
      new Option(
        '--attention <impl>',
        'attention implementation (default auto: transformers’ choice, sdpa); flash_attention_2 needs flash-attn',
      ).choices(AttentionSchema.options),
    )
    .addOption(
      new Option(
        '--backend <backend>',
        'who generates: transformers, or vllm (CUDA, pip install vllm)',
      ).choices(['transformers', 'vllm']),
    )
    .option('--threads <n>', 'CPU threads for torch', positiveInt)
    .option('--python <bin>', 'Python interpreter (default: the arc-ttft venv)', nonEmpty)
    .option('--no-resume', 'start over instead of resuming from the journal in --out')
    .option(
      '--no-retry-failed',
      'on a resume, keep the failed and timed-out tasks instead of running them again',
    )
    .addOption(
      new Option('--fallback <kind>', 'answer where nothing was predicted').choices(['input', 'zeros']),
    )
    .option('--save-adapters', 'save each task’s adapter under <out>/adapters/<id>')
    .option(
      '--ray <address>',
      'run the tasks on Ray workers: auto (this machine’s cluster, else a local one), local, or a cluster address (needs arc-ttft setup --ray)',
    )
    .option(
      '--workers <n>',
      'Ray workers (default: one per GPU, else per CPU; implies --ray auto)',
      positiveInt,
    )
    .option('--json', 'print the result summary as JSON on stdout')
    .option('-v, --verbose', 'show Python’s output, and its traceback when it fails')
    .action(async (flags: RunFlags) => {
      let tasks = flags.tasks;
      if (tasks === undefined) {
        tasks = join(sampleDataDir(), 'challenges.json');
        flags.solutions ??= join(sampleDataDir(), 'solutions.json');
      }
      const options = runOptionsFromFlags(flags);
      const progress = new RunProgress();
      let total = 0; // the run's valid tasks, from its first event
      const started = performance.now();
      const controller = new AbortController();
      // First Ctrl-C: stop Python, keep the journal, write the submission and report, exit 130.
      // A second Ctrl-C exits at once.
      const onSigint = () => {
        if (controller.signal.aborted) process.exit(130);
        progress.note('interrupted: stopping (finished tasks are kept; run the same command to resume)');
        controller.abort();
      };
      process.on('SIGINT', onSigint);
      try {
        const result = await runSingleTaskTTFT(tasks, options, {
          onEvent: (event) => {
            if (event.type === 'run_started') total = event.total;
            progress.update(event);
          },
          signal: controller.signal,
          ...(flags.verbose ? { onLog: (line: string) => progress.note(`[python] ${line}`) } : {}),
        });
        for (const error of result.invalid) process.stderr.write(`invalid task: ${error.message}\n`);
        // Asked for a score and got none: say which tasks the solutions lack, instead of a silent gap.
        if (flags.solutions !== undefined && !result.aborted && result.unknownOutputs.length > 0) {
          const n = result.unknownOutputs.length;
          const some = result.unknownOutputs.slice(0, 5).join(', ') + (n > 5 ? ', …' : '');
          process.stderr.write(
            `note: no score: the solutions lack test outputs of ${n} task${n === 1 ? '' : 's'} (${some}); the score needs every one\n`,
          );
        }
        if (result.aborted) process.exitCode = 130;
        const notRun = total - result.records.length;
        if (flags.json) {
          // metrics.json is written only with a score: not listed otherwise.
          const files =
            result.files === undefined
              ? null
              : result.score
                ? result.files
                : { ...result.files, metrics: undefined };
          printJsonSummary({
            mode: result.mode,
            aborted: result.aborted,
            notRun,
            statusCounts: result.statusCounts,
            score: result.score?.score ?? null,
            metrics: result.score?.metrics ?? null,
            seconds: result.seconds,
            files,
          });
          return;
        }
        const counts = Object.entries(result.statusCounts)
          .filter(([, n]) => n > 0)
          .map(([s, n]) => `${n} ${s}`)
          .join(', ');
        process.stdout.write(`\n${counts || 'no task finished'} in ${result.seconds.toFixed(1)} s\n`);
        if (result.aborted && notRun > 0) {
          process.stdout.write(
            `stopped: ${notRun} task${notRun === 1 ? '' : 's'} not run (fallback answers in the submission); run the same command to resume\n`,
          );
        }
        if (result.score) process.stdout.write(`\n${formatScoreTable(result.score)}\n`);
        if (result.files) {
          process.stdout.write(`\nsubmission: ${result.files.submission}\n`);
          process.stdout.write(`journal:    ${result.files.journal}\n`);
          if (result.score) process.stdout.write(`metrics:    ${result.files.metrics}\n`);
          process.stdout.write(`report:     ${result.files.report}\n`);
        }
      } catch (error) {
        if (!(error instanceof ArcTtftError)) throw error;
        if (controller.signal.aborted) {
          // Ctrl-C while Python or the model was starting: the bridge stopped it, so the start failed.
          process.stderr.write('stopped before any task ran; the output folder is as it was\n');
          process.exitCode = 130;
          // --json promises JSON on stdout: a script parsing it learns that nothing ran.
          if (flags.json) {
            printJsonSummary({
              mode: options.mode ?? 'single-task',
              aborted: true,
              notRun: total > 0 ? total : null,
              statusCounts: {},
              score: null,
              metrics: null,
              seconds: (performance.now() - started) / 1000,
              files: null,
            });
          }
          return;
        }
        const flagError = flagErrorMessage(error);
        if (flagError !== undefined) {
          process.stderr.write(`error: ${flagError.replaceAll('\n', '\nerror: ')}\n`);
          process.exitCode = 1;
        } else printError(error, flags.verbose === true);
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
