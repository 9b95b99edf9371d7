/**
 * Prompt layout: the train pairs as context, then the test input, ending exactly where the answer grid
 * starts. The same builder makes inference prompts and training texts, so the two can never drift
 * apart. Text only: the Python side tokenises it and appends EOS after the answer.
 *
 * `arc24` format (arc24's layout: `## Example k` / `### Input` / `### Output`, then `## Test case`):
 * ````text
 * ## Example 1
 *
 * ### Input
 *
 * ```grid shape: 2x2
 * 1 01
 * 2 10
 * ```
 *
 * ### Output
 *
 * ```grid shape: 2x2
 * …
 * ```
 *
 * ## Test case
 *
 * ### Input
 *
 * ```grid shape: …
 * ```
 *
 * ### Output
 *
 * ````
 * With `style: 'chatml'` the same user message sits in a Qwen/ChatML conversation
 * (`<|im_start|>system … <|im_start|>user … <|im_start|>assistant\n### Output\n\n`), as arc24 ran it on
 * Qwen instruct models; the answer is then the assistant turn's grid, and EOS is `<|im_end|>`.
 *
 * `compact` format (only {@link COMPACT_ALPHABET} characters): `I\n<input>\nO\n<output>\n` per train
 * pair, then `I\n<test input>\nO\n`; the answer is `<output>` ending in `.`.
 *
 * @module
 */
import { z } from 'zod';
import { checkTask, parseOptions, parseWith } from '../data/validate.js';
import { ValidationError } from '../errors.js';
import type { Example, Grid, Task } from '../schemas.js';
import { MAX_GRID_SIZE } from '../schemas.js';
import {
  COMPACT_MARKERS,
  type GridEncoding,
  type GridFormatName,
  GridFormatNameSchema,
  getEncoding,
} from './encodings.js';

/** How the arc24 text is wrapped: `plain` (no chat markup) or `chatml` (Qwen's chat template). */
export const PromptStyleSchema = z.enum(['plain', 'chatml'], { error: 'style must be "plain" or "chatml"' });
/** How the prompt text is wrapped. */
export type PromptStyle = z.infer<typeof PromptStyleSchema>;

/**
 * zod refinement shared by every options schema with `format` and `style`: chat markup is outside the
 * compact alphabet, so `compact` takes only `plain`.
 * @internal
 */
export function checkStyle(o: { format: GridFormatName; style: PromptStyle }, ctx: z.RefinementCtx): void {
  if (o.format === 'compact' && o.style !== 'plain') {
    ctx.addIssue({
      code: 'custom',
      path: ['style'],
      message: 'the compact format supports only style "plain"',
    });
  }
}

/** Options of the prompt builders. */
export const PromptOptionsSchema = z
  .object({
    /**
     * Grid format.
     * @default 'arc24'
     */
    format: GridFormatNameSchema.default('arc24'),
    /**
     * `plain` text, or `chatml`: arc24's prompt inside Qwen's chat template (arc24 format only, since the
     * chat markup is outside the compact alphabet).
     * @default 'plain'
     */
    style: PromptStyleSchema.default('plain'),
  })
  .superRefine(checkStyle);
/** Options of the prompt builders; a bare format name is short for `{ format }`. */
export type PromptOptions = z.input<typeof PromptOptionsSchema>;
/** What the prompt builders accept as their format argument. */
export type PromptFormat = GridFormatName | PromptOptions;

/** A training example as text: the prompt, the answer, and where the answer (the loss span) sits. */
export interface TrainingText {
  /** The inference prompt for `target.input` (identical to {@link buildInferencePrompt}'s). */
  readonly prompt: string;
  /** The target output grid's text, terminator included: the only text that carries the loss. */
  readonly answer: string;
  /** `prompt + answer`. */
  readonly text: string;
  /** `[start, end)` character offsets of `answer` in `text`. */
  readonly answerSpan: readonly [start: number, end: number];
}

/** System prompt of the `chatml` style (Qwen's default assistant prompt, as arc24's v1 prompts used). */
export const CHATML_SYSTEM_PROMPT = 'You are a helpful assistant.';

/** One sentence that frames the task in the `chatml` style (an instruct model expects an instruction). */
export const CHATML_INSTRUCTION =
  'Solve this Abstraction and Reasoning Corpus (ARC) task. The examples below show input grids and their output grids; find the transformation and apply it to the test input.';

interface Resolved {
  readonly format: GridFormatName;
  readonly style: PromptStyle;
  readonly encoding: GridEncoding;
}

// Parsing options costs more than building a small prompt; the common string form skips zod.
const RESOLVED_BY_NAME = new Map<string, Resolved>();

function resolve(format: PromptFormat | undefined, where: string): Resolved {
  if (typeof format === 'string') {
    const cached = RESOLVED_BY_NAME.get(format);
    if (cached !== undefined) return cached;
  }
  const o = parseOptions(PromptOptionsSchema, typeof format === 'string' ? { format } : format, where);
  const resolved: Resolved = { format: o.format, style: o.style, encoding: getEncoding(o.format) };
  if (typeof format === 'string') RESOLVED_BY_NAME.set(format, resolved);
  return resolved;
}

/**
 * `grid` encoded; a bad grid is a {@link ValidationError} whose path says which grid of the call it is
 * (`buildInferencePrompt: train[1].output[2][0]: …`).
 */
function encodeAt(encoding: GridEncoding, grid: Grid, path: string, where: string): string {
  try {
    return encoding.encode(grid);
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    throw new ValidationError({
      source: where,
      issues: error.issues.map((i) => ({ ...i, path: path + i.path })),
    });
  }
}

/** The train pairs' grids and the test input, encoded, checked on the way. */
function encodeAll(
  encoding: GridEncoding,
  train: readonly Example[],
  testInput: Grid,
  where: string,
): { pairs: [input: string, output: string][]; test: string } {
  if (!Array.isArray(train)) {
    throw new ValidationError({
      source: where,
      issues: [{ path: 'train', message: 'train must be an array of pairs' }],
    });
  }
  const pairs = train.map((pair, i): [string, string] => {
    if (typeof pair !== 'object' || pair === null) {
      throw new ValidationError({
        source: where,
        issues: [{ path: `train[${i}]`, message: 'a train pair must be an object with input and output' }],
      });
    }
    return [
      encodeAt(encoding, pair.input, `train[${i}].input`, where),
      encodeAt(encoding, pair.output, `train[${i}].output`, where),
    ];
  });
  return { pairs, test: encodeAt(encoding, testInput, 'input', where) };
}

function arc24UserMessage(pairs: readonly [string, string][], test: string): string {
  let out = '';
  pairs.forEach(([input, output], i) => {
    out += `## Example ${i + 1}\n\n### Input\n\n${input}\n\n### Output\n\n${output}\n\n`;
  });
  return `${out}## Test case\n\n### Input\n\n${test}\n\n`;
}

function build(r: Resolved, train: readonly Example[], testInput: Grid, where: string): string {
  const { pairs, test } = encodeAll(r.encoding, train, testInput, where);
  if (r.format === 'compact') {
    const { input: I, output: O } = COMPACT_MARKERS;
    let out = '';
    for (const [input, output] of pairs) out += `${I}\n${input}\n${O}\n${output}\n`;
    return `${out}${I}\n${test}\n${O}\n`;
  }
  const user = arc24UserMessage(pairs, test);
  if (r.style === 'plain') return `${user}### Output\n\n`;
  // arc24's user message ends with the test input; the assistant turn starts with the output heading.
  return (
    `<|im_start|>system\n${CHATML_SYSTEM_PROMPT}<|im_end|>\n` +
    `<|im_start|>user\n${CHATML_INSTRUCTION}\n\n${user.trimEnd()}\n<|im_end|>\n` +
    '<|im_start|>assistant\n### Output\n\n'
  );
}

/**
 * The inference prompt: every train pair (input then output), then the test input and the output
 * header, ending exactly where the answer grid starts. `format` is a format name or
 * {@link PromptOptions}; defaults to `'arc24'`, plain.
 */
export function buildInferencePrompt(
  train: readonly Example[],
  testInput: Grid,
  format: PromptFormat = 'arc24',
): string {
  return build(resolve(format, 'buildInferencePrompt'), train, testInput, 'buildInferencePrompt');
}

/**
 * A training text: the inference prompt for `target.input` with `train` as context, followed by
 * `target.output` as the answer. `text.slice(...answerSpan) === answer`, the span that carries the loss.
 */
export function buildTrainingText(
  train: readonly Example[],
  target: Example,
  format: PromptFormat = 'arc24',
): TrainingText {
  const r = resolve(format, 'buildTrainingText');
  if (typeof target !== 'object' || target === null) {
    throw new ValidationError({
      source: 'buildTrainingText',
      issues: [{ path: 'target', message: 'the target must be a pair with input and output' }],
    });
  }
  const prompt = build(r, train, target.input, 'buildTrainingText');
  const answer = encodeAt(r.encoding, target.output, 'target.output', 'buildTrainingText');
  return {
    prompt,
    answer,
    text: prompt + answer,
    answerSpan: [prompt.length, prompt.length + answer.length],
  };
}

/** The answer text for `grid` in `format` (the grid's encoding, terminator included). */
export function answerTextFor(grid: Grid, format: PromptFormat = 'arc24'): string {
  return encodeAt(resolve(format, 'answerTextFor').encoding, grid, 'grid', 'answerTextFor');
}

const AnswerSideSchema = z.number().int().min(1).max(MAX_GRID_SIZE);
const AnswerSizeSchema = z.object({ rows: AnswerSideSchema, cols: AnswerSideSchema });

/**
 * Characters of the answer for any `rows × cols` grid in `format` (for the compact format that is also
 * its token count). Use it, or the token count of {@link answerTextFor} of a filled grid, to bound
 * generation length.
 */
export function maxAnswerChars(format: PromptFormat, rows: number, cols: number): number {
  parseWith(AnswerSizeSchema, { rows, cols }, { source: 'maxAnswerChars' });
  return resolve(format, 'maxAnswerChars').encoding.encodedLength(rows, cols);
}

/**
 * Estimated largest answer shape of a task: the most rows and the most columns over all train outputs and
 * all test inputs, each test input grown as much as the train pairs grow (output over input, per dimension:
 * an upscaling task answers with a grid larger than any it shows), each side capped at 30. The test output
 * is unknown, so this is a heuristic bound.
 */
export function largestAnswerShape(task: Pick<Task, 'train' | 'test'>): [rows: number, cols: number] {
  checkTask(task, { source: 'largestAnswerShape' });
  let rows = 1;
  let cols = 1;
  // The largest growth as a fraction [out, in], so that the grown sizes are exact (9/7 × 21 is 27, not 28).
  let growRows: [number, number] = [1, 1];
  let growCols: [number, number] = [1, 1];
  const larger = (a: [number, number], out: number, inp: number): [number, number] =>
    inp > 0 && out * a[1] > a[0] * inp ? [out, inp] : a;
  for (const { input, output } of task.train) {
    rows = Math.max(rows, output.length);
    cols = Math.max(cols, output[0]?.length ?? 0);
    growRows = larger(growRows, output.length, input.length);
    growCols = larger(growCols, output[0]?.length ?? 0, input[0]?.length ?? 0);
  }
  const grown = (size: number, [out, inp]: [number, number]) => Math.ceil((size * out) / inp);
  for (const { input } of task.test) {
    rows = Math.max(rows, grown(input.length, growRows));
    cols = Math.max(cols, grown(input[0]?.length ?? 0, growCols));
  }
  return [Math.min(rows, MAX_GRID_SIZE), Math.min(cols, MAX_GRID_SIZE)];
}
