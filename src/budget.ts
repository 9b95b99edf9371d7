/**
 * Token budget: which train pairs of a task fit in the model's context. The prompt for every test input,
 * with the kept train pairs as context, plus the longest possible answer, must fit `maxSeqLen`; train
 * pairs are dropped one at a time (in the order the strategy picks) until it does.
 *
 * Tokens are counted by a caller-supplied batch counter, so the same code serves a real tokenizer (sync
 * or async, e.g. over the Python bridge), {@link charCount} for the character-level compact format, or
 * the optional Qwen tokenizer of `tokenizers/qwen.ts`.
 *
 * @module
 */
import { z } from 'zod';
import { applyAugmentation, identityAugmentation } from './augment.js';
import { parseOptions, validateTask } from './data/validate.js';
import { TaskTooLongError, ValidationError } from './errors.js';
import { GridFormatNameSchema } from './format/encodings.js';
import {
  answerTextFor,
  buildInferencePrompt,
  checkStyle,
  largestAnswerShape,
  type PromptOptions,
  PromptStyleSchema,
} from './format/prompt.js';
import { filledGrid } from './grid.js';
import { createRng, deriveSeed } from './rng.js';
import { MAX_GRID_SIZE, SeedSchema, type Task, TaskIdSchema } from './schemas.js';

/** Counts the tokens of each text, in order; may be sync or async (e.g. a tokenizer over a bridge). */
export type CountTokens = (texts: string[]) => number[] | Promise<number[]>;

/** One token per character: the exact count for the compact format's character-level vocabulary. */
export const charCount: CountTokens = (texts) => texts.map((t) => t.length);

/** Order in which train pairs are dropped. */
export const DropStrategySchema = z.enum(['random', 'largest-first', 'last-first'], {
  error: 'strategy must be "random", "largest-first" or "last-first"',
});
/**
 * `random` (seeded), `largest-first` (the pair with the longest encoded text, input + output, first;
 * ties drop the later pair) or `last-first` (arc24's choice).
 */
export type DropStrategy = z.infer<typeof DropStrategySchema>;

/** Options of {@link fitTask}. */
export const FitOptionsSchema = z
  .object({
    /**
     * Most tokens one sequence (prompt + answer + reserved tokens) may have.
     * @default 8192
     */
    maxSeqLen: z.number().int().positive().default(8192),
    /**
     * Grid format of the prompt.
     * @default 'arc24'
     */
    format: GridFormatNameSchema.default('arc24'),
    /**
     * Prompt style (`chatml` wraps the arc24 prompt in Qwen's chat template).
     * @default 'plain'
     */
    style: PromptStyleSchema.default('plain'),
    /**
     * Which train pair to drop next.
     * @default 'random'
     */
    strategy: DropStrategySchema.default('random'),
    /**
     * Seed of the `random` strategy (combined with `taskId`, so tasks drop independently).
     * @default 0
     */
    seed: SeedSchema.default(0),
    /**
     * Longest possible answer: `estimate` (most rows and most columns over train outputs and test inputs,
     * each test input grown as the train pairs grow; see `largestAnswerShape`) or `max` (30 × 30).
     * @default 'estimate'
     */
    answerShape: z
      .enum(['estimate', 'max'], { error: 'answerShape must be "estimate" or "max"' })
      .default('estimate'),
    /**
     * Also count each prompt with every grid transposed, as the views turned by 90° (`rot90`, `rot270`,
     * `transpose`, `antiTranspose`) show it; they can be longer. `false` counts the task as given only: for
     * augmentations without those transforms.
     * @default true
     */
    transposed: z.boolean().default(true),
    /**
     * Tokens added beyond the text, e.g. the EOS the engine appends after the answer.
     * @default 1
     */
    reservedTokens: z.number().int().nonnegative().default(1),
    /** Task id, for results and error messages. */
    taskId: TaskIdSchema.optional(),
  })
  .superRefine(checkStyle);
/** Options of {@link fitTask}. */
export type FitOptions = z.input<typeof FitOptionsSchema>;

/** The task fits, possibly after dropping train pairs. */
export interface FitSuccess {
  /** Discriminant: the task fits. */
  readonly fits: true;
  /** `options.taskId`, when given. */
  readonly taskId: string | undefined;
  /** Indices of the train pairs to keep, in their original order. */
  readonly kept: number[];
  /** Indices of the dropped train pairs, in the order they were dropped. */
  readonly dropped: number[];
  /**
   * Worst case over the test inputs (as given or transposed), with the kept pairs: prompt + longest answer +
   * reserved tokens.
   */
  readonly tokens: number;
  /** The same worst case with every train pair (equals `tokens` when nothing was dropped). */
  readonly tokensAllPairs: number;
  /** The answer shape assumed, `[rows, cols]` (`[cols, rows]` in the transposed views). */
  readonly answerShape: readonly [rows: number, cols: number];
  /** Tokens of the longest possible answer plus reserved tokens: a safe `max_new_tokens`. */
  readonly maxNewTokens: number;
}

/** The task does not fit even with a single train pair. */
export interface FitFailure {
  /** Discriminant: the task does not fit. */
  readonly fits: false;
  /** `options.taskId`, when given. */
  readonly taskId: string | undefined;
  /** Why it does not fit: even a single train pair is too long. */
  readonly reason: 'too_long';
  /** Tokens needed with only the smallest train pair (worst test input). */
  readonly minTokens: number;
  /** Tokens needed with every train pair (worst test input). */
  readonly tokensAllPairs: number;
  /** The `maxSeqLen` it was fitted to. */
  readonly maxSeqLen: number;
  /** The same failure as an error, ready to throw or report. */
  readonly error: TaskTooLongError;
}

/** Outcome of {@link fitTask}. */
export type FitResult = FitSuccess | FitFailure;

async function countChecked(countTokens: CountTokens, texts: string[]): Promise<number[]> {
  const counts = await countTokens(texts);
  if (!Array.isArray(counts) || counts.length !== texts.length) {
    throw new ValidationError({
      source: 'countTokens',
      issues: [
        {
          path: '',
          message: `countTokens returned ${Array.isArray(counts) ? `${counts.length} counts` : String(counts)} for ${texts.length} texts`,
        },
      ],
    });
  }
  // An index loop, not forEach: a sparse array's holes must fail too.
  for (let i = 0; i < counts.length; i++) {
    const n: unknown = counts[i];
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) {
      throw new ValidationError({
        source: 'countTokens',
        issues: [
          { path: `[${i}]`, message: `a token count must be a non-negative number, got ${String(n)}` },
        ],
      });
    }
  }
  return counts;
}

/** Whether every grid of `task` is square (transposing it changes no prompt's length). */
function allSquare(task: Task): boolean {
  const grids = [...task.train.flatMap((p) => [p.input, p.output]), ...task.test.map((t) => t.input)];
  return grids.every((g) => g.length === (g[0]?.length ?? 0));
}

/**
 * Train indices in the order they would be dropped. Whatever the strategy, the smallest pair comes last
 * (it is never dropped), so a task fails only when even its smallest pair is too long.
 */
function dropOrder(task: Task, o: z.output<typeof FitOptionsSchema>, prompt: PromptOptions): number[] {
  // Encoded length is a tokenizer-free proxy for tokens (exact for compact, close for arc24 on Qwen).
  const size = task.train.map(
    (p) => answerTextFor(p.input, prompt).length + answerTextFor(p.output, prompt).length,
  );
  const indices = task.train.map((_, i) => i);
  let order: number[];
  switch (o.strategy) {
    case 'last-first':
      order = indices.reverse();
      break;
    case 'largest-first':
      order = indices.sort((a, b) => size[b]! - size[a]! || b - a);
      break;
    case 'random':
      order = createRng(deriveSeed(o.seed, 'fitTask', o.taskId ?? '')).shuffle(indices);
      break;
  }
  // The smallest pair (the earliest among equals) is the last one standing.
  let smallest = 0;
  for (let i = 1; i < size.length; i++) if (size[i]! < size[smallest]!) smallest = i;
  return [...order.filter((i) => i !== smallest), smallest];
}

/**
 * Finds the train pairs of `task` that fit `maxSeqLen`: every test input's prompt with the kept pairs,
 * plus the longest possible answer and `reservedTokens`, must fit, as given and transposed (the views
 * turned by 90° swap rows and columns, which changes the prompt's length). Drops pairs one at a time in the
 * strategy's order (the smallest pair always last) and keeps the most that fit. Calls `countTokens` at
 * most twice: all pairs (plus the answers alone), then every smaller candidate in one batch. Returns a
 * {@link FitFailure} (never throws) when one pair is too many; throws {@link ValidationError} for bad
 * options, a bad task or a bad counter.
 */
export async function fitTask(
  task: Task,
  countTokens: CountTokens,
  options?: FitOptions,
): Promise<FitResult> {
  const o = parseOptions(FitOptionsSchema, options, 'fitTask');
  validateTask(task, { taskId: o.taskId });
  const prompt: PromptOptions = { format: o.format, style: o.style };
  const shape: [number, number] =
    o.answerShape === 'max' ? [MAX_GRID_SIZE, MAX_GRID_SIZE] : largestAnswerShape(task);
  // A view turned by 90° (rot90, rot270, transpose, antiTranspose) swaps every grid's rows and columns,
  // and both formats spend more per row than per column: each prompt is also counted transposed (every
  // other view has the length of one of the two). Square grids only: one orientation is enough.
  const orientations = [{ task, answer: answerTextFor(filledGrid(shape[0], shape[1]), prompt) }];
  if (o.transposed && !allSquare(task)) {
    const transposed = applyAugmentation(task, { ...identityAugmentation(), transform: 'transpose' });
    orientations.push({ task: transposed, answer: answerTextFor(filledGrid(shape[1], shape[0]), prompt) });
  }
  const order = dropOrder(task, o, prompt);
  const n = task.train.length;

  // Candidate k keeps all but the first n-k pairs of `order`, in original order.
  const keptFor = (k: number): number[] => order.slice(n - k).sort((a, b) => a - b);
  const textsFor = (kept: readonly number[]): string[] =>
    orientations.flatMap(({ task: view, answer }) => {
      const train = kept.map((i) => view.train[i]!);
      return view.test.map((t) => buildInferencePrompt(train, t.input, prompt) + answer);
    });
  const worst = (counts: readonly number[]): number => Math.max(...counts) + o.reservedTokens;

  // Round 1: all pairs, plus the answers alone (for maxNewTokens).
  const m = orientations.length;
  const first = await countChecked(countTokens, [
    ...orientations.map((v) => v.answer),
    ...textsFor(keptFor(n)),
  ]);
  const maxNewTokens = worst(first.slice(0, m));
  const full = worst(first.slice(m));
  const success = (k: number, tokens: number): FitSuccess => ({
    fits: true,
    taskId: o.taskId,
    kept: keptFor(k),
    dropped: order.slice(0, n - k),
    tokens,
    tokensAllPairs: full,
    answerShape: shape,
    maxNewTokens,
  });
  if (full <= o.maxSeqLen) return success(n, full);

  // Round 2: every smaller candidate in one batch; keep the largest that fits.
  const t = task.test.length * m;
  const ks = Array.from({ length: n - 1 }, (_, i) => n - 1 - i);
  const counts =
    ks.length > 0
      ? await countChecked(
          countTokens,
          ks.flatMap((k) => textsFor(keptFor(k))),
        )
      : [];
  for (let j = 0; j < ks.length; j++) {
    const tokens = worst(counts.slice(j * t, (j + 1) * t));
    if (tokens <= o.maxSeqLen) return success(ks[j]!, tokens);
  }
  const minTokens = ks.length > 0 ? worst(counts.slice((ks.length - 1) * t)) : full;
  const error = new TaskTooLongError({ taskId: o.taskId ?? '(unnamed)', minTokens, maxSeqLen: o.maxSeqLen });
  return {
    fits: false,
    taskId: o.taskId,
    reason: 'too_long',
    minTokens,
    tokensAllPairs: full,
    maxSeqLen: o.maxSeqLen,
    error,
  };
}
