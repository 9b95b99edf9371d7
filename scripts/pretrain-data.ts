/**
 * Builds the pretraining corpus of the embedded model: one JSON line `{task, kind, prompt, answer}` per
 * sample, made with the data layer exactly as test-time fine-tuning makes them (leave-one-out samples under
 * rotations/flips, colour permutations that keep the background, shuffled context order; the prompt and answer
 * texts of `buildTrainingText`), plus generated curriculum tasks that teach the copy skill a random model lacks
 * (identity, colour maps, rotations/flips of random small grids). A `<out>.meta.json` records the settings and
 * the counts. Each line also lists where the context pairs' output grids sit in the prompt (`outputs`), so the
 * trainer can learn from every output, not only the answer. Deterministic for `--seed`.
 *
 * Only ARC-AGI-1 **training** tasks are read: a source path that mentions "evaluation" is refused, and so is
 * any task whose id (or content) appears in an `--exclude` set (default: the ARC-AGI-1 evaluation folder).
 *
 * ```sh
 * npx tsx scripts/pretrain-data.ts --out .cache/pretrain/corpus.jsonl [--seed 0] [--per-task 96]
 *   [--max-chars 2048] [--curriculum 20000] [--format compact] [--data <training dir>] [--exclude <dir>]…
 * ```
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { ALL_TRANSFORMS, applyTransform, type Transform } from '../src/augment.js';
import { loadTasks } from '../src/data/load.js';
import { parseOptions } from '../src/data/validate.js';
import { ArcTtftError, ValidationError } from '../src/errors.js';
import { GridFormatNameSchema } from '../src/format/encodings.js';
import { answerTextFor, buildTrainingText } from '../src/format/prompt.js';
import { createRng, deriveSeed, type Rng } from '../src/rng.js';
import { buildTrainingSamples } from '../src/samples.js';
import type { Example, Grid, Task } from '../src/schemas.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ARC1 = join(ROOT, '../shared/arc-data/arc-agi-1');

/** Options of the corpus builder (the CLI flags, camel-cased). */
export const CorpusOptionsSchema = z.object({
  /** Output JSONL path (`<out>.meta.json` is written next to it). */
  out: z.string().min(1),
  /**
   * ARC training tasks: a folder of `<id>.json` files or a challenges file.
   * @default '../shared/arc-data/arc-agi-1/training'
   */
  data: z.string().min(1).default(join(ARC1, 'training')),
  /**
   * Task sets whose ids and contents must never appear in the corpus.
   * @default ['../shared/arc-data/arc-agi-1/evaluation']
   */
  exclude: z.array(z.string().min(1)).default(() => [join(ARC1, 'evaluation')]),
  /**
   * Base seed of augmentations and curriculum.
   * @default 0
   */
  seed: z.number().int().default(0),
  /**
   * Most samples per ARC task (leave-one-out targets × augmentations).
   * @default 96
   */
  perTask: z.number().int().positive().default(96),
  /**
   * Longest sample in characters, EOS included (= tokens with a one-token-per-character vocabulary): context
   * pairs are dropped until a task's samples fit, and longer samples are skipped.
   * @default 2048
   */
  maxChars: z.number().int().min(16).default(2048),
  /**
   * Generated curriculum samples (0 = none).
   * @default 20000
   */
  curriculum: z.number().int().min(0).default(20000),
  /**
   * Largest side of a curriculum grid.
   * @default 10
   */
  curriculumMaxSide: z.number().int().min(1).max(30).default(10),
  /**
   * Grid format of the texts.
   * @default 'compact'
   */
  format: GridFormatNameSchema.default('compact'),
  /**
   * Use the training tasks' test pairs (their outputs are public) as extra pairs.
   * @default true
   */
  useTest: z.boolean().default(true),
});
/** Options of {@link buildCorpus}. */
export type CorpusOptions = z.input<typeof CorpusOptionsSchema>;

/** One corpus line: `{task, kind, prompt, answer, outputs}`. */
export interface CorpusLine {
  /** ARC task id, or `gen-<kind>-<n>` for a curriculum task. */
  readonly task: string;
  /** `'arc'` or the curriculum kind (`identity`, `recolour`, `geometry`). */
  readonly kind: string;
  readonly prompt: string;
  readonly answer: string;
  /**
   * `[start, end)` character offsets of the context pairs' output grids in `prompt` (terminators included):
   * with `--loss outputs` the trainer also learns to predict these, each from the pairs before it.
   */
  readonly outputs: readonly (readonly [number, number])[];
}

/** Counts printed at the end and stored in `<out>.meta.json`. */
export interface CorpusCounts {
  tasks: number;
  /** Training tasks left out because they share a pair with an excluded (evaluation) task. */
  tasksSharedWithExcluded: string[];
  tasksUsed: number;
  tasksTooLong: number;
  pairsDropped: number;
  arcSamples: number;
  samplesTooLong: number;
  curriculumSamples: Record<string, number>;
  lines: number;
  chars: number;
  answerChars: number;
  longestSample: number;
}

function fail(message: string, path = ''): never {
  throw new ValidationError({ source: 'pretrain-data', issues: [{ path, message }] });
}

type ResolvedOptions = z.output<typeof CorpusOptionsSchema>;

/** Where each context output grid sits in `prompt`: found in order, after its input, as the encoder wrote it. */
function outputSpans(
  prompt: string,
  train: readonly Example[],
  format: ResolvedOptions['format'],
): [number, number][] {
  const spans: [number, number][] = [];
  let cursor = 0;
  for (const pair of train) {
    const input = answerTextFor(pair.input, format);
    const output = answerTextFor(pair.output, format);
    cursor = prompt.indexOf(input, cursor) + input.length;
    const start = prompt.indexOf(output, cursor);
    if (start < 0) fail('an output grid was not found in its prompt (format changed?)', 'outputs');
    spans.push([start, start + output.length]);
    cursor = start + output.length;
  }
  return spans;
}

/** The corpus line of one context/target sample. */
function corpusLine(
  task: string,
  kind: string,
  train: readonly Example[],
  target: Example,
  format: ResolvedOptions['format'],
): CorpusLine {
  const text = buildTrainingText(train, target, format);
  return {
    task,
    kind,
    prompt: text.prompt,
    answer: text.answer,
    outputs: outputSpans(text.prompt, train, format),
  };
}

/** Characters of a sample, EOS included. */
function sampleChars(train: readonly Example[], target: Example, format: ResolvedOptions['format']): number {
  return buildTrainingText(train, target, format).text.length + 1;
}

/**
 * Longest leave-one-out sample of the pairs `kept` under any geometry: rotations by 90° change a grid's text
 * length, so both orientations are measured; colour maps and context order do not change it.
 */
function worstSampleChars(pairs: readonly Example[], kept: readonly number[], o: ResolvedOptions): number {
  let worst = 0;
  for (const t of ['identity', 'transpose'] as const satisfies readonly Transform[]) {
    const view = pairs.map((p) => ({
      input: applyTransform(p.input, t),
      output: applyTransform(p.output, t),
    }));
    for (const target of kept) {
      const context = kept.filter((i) => i !== target).map((i) => view[i]!);
      worst = Math.max(worst, sampleChars(context, view[target]!, o.format));
    }
  }
  return worst;
}

const gridCells = (g: Grid): number => g.length * (g[0]?.length ?? 0);

/**
 * The pairs to keep so every sample fits `maxChars`: drop the largest pair until it fits; `undefined` when
 * fewer than 2 pairs (a context and a target) would remain.
 */
function fitPairs(pairs: readonly Example[], o: ResolvedOptions): number[] | undefined {
  const kept = pairs.map((_, i) => i);
  while (kept.length >= 2 && worstSampleChars(pairs, kept, o) > o.maxChars) {
    let largest = 0;
    for (let k = 1; k < kept.length; k++) {
      const size = (i: number) => gridCells(pairs[i]!.input) + gridCells(pairs[i]!.output);
      if (size(kept[k]!) > size(kept[largest]!)) largest = k;
    }
    kept.splice(largest, 1);
  }
  return kept.length >= 2 ? kept : undefined;
}

/** Keys of a task's pairs (input and output grids), to catch excluded content under another id. */
function pairKeys(task: Task): string[] {
  return [...task.train, ...task.test].map((p) => JSON.stringify([p.input, p.output ?? null]));
}

// ---------------------------------------------------------------------------------------------- curriculum

/** A random ARC-like grid: mostly background, a few colours. */
function randomGrid(rng: Rng, rows: number, cols: number): Grid {
  const palette = rng.shuffle([1, 2, 3, 4, 5, 6, 7, 8, 9]).slice(0, 1 + rng.int(4));
  const background = rng.next() < 0.8 ? 0 : palette[0]!;
  const density = 0.15 + 0.6 * rng.next();
  return Array.from({ length: rows }, () =>
    Array.from({ length: cols }, () =>
      rng.next() < density ? palette[rng.int(palette.length)]! : background,
    ),
  );
}

/** A colour map that changes 1–3 colours (a swap or a cycle), as ARC recolouring tasks do. */
function randomRecolour(rng: Rng): number[] {
  const map = Array.from({ length: 10 }, (_, i) => i);
  const moved = rng.shuffle([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).slice(0, 2 + rng.int(2));
  for (let i = 0; i < moved.length; i++) map[moved[i]!] = moved[(i + 1) % moved.length]!;
  return map;
}

const CURRICULUM_KINDS = ['identity', 'recolour', 'geometry'] as const;

/** One generated task as a sample: 2–4 context pairs and a target, all made by the same rule. */
function curriculumSample(rng: Rng, n: number, o: ResolvedOptions): CorpusLine {
  const kind = CURRICULUM_KINDS[n % CURRICULUM_KINDS.length]!;
  const map = randomRecolour(rng);
  const geometry: Transform = ALL_TRANSFORMS[1 + rng.int(ALL_TRANSFORMS.length - 1)]!;
  const rule = (g: Grid): Grid => {
    if (kind === 'identity') return g.map((row) => row.slice());
    if (kind === 'recolour') return g.map((row) => row.map((c) => map[c]!));
    return applyTransform(g, geometry);
  };
  // Either every grid has one shape (a common ARC setting) or each has its own.
  const fixed = rng.next() < 0.5;
  const side = () => 1 + rng.int(o.curriculumMaxSide);
  const shape = [side(), side()] as const;
  const pairs: Example[] = Array.from({ length: 3 + rng.int(3) }, () => {
    const input = fixed ? randomGrid(rng, shape[0], shape[1]) : randomGrid(rng, side(), side());
    return { input, output: rule(input) };
  });
  const target = pairs.pop()!;
  return corpusLine(`gen-${kind}-${n}`, kind, pairs, target, o.format);
}

// ---------------------------------------------------------------------------------------------- corpus

async function excludedSets(o: ResolvedOptions): Promise<{ ids: Set<string>; pairs: Set<string> }> {
  const ids = new Set<string>();
  const pairs = new Set<string>();
  for (const path of o.exclude) {
    if (!existsSync(path)) {
      fail(`exclude set ${path} does not exist: pass the evaluation task set(s) with --exclude`, 'exclude');
    }
    const { tasks } = await loadTasks(path, { mode: 'lenient' });
    for (const [id, task] of Object.entries(tasks)) {
      ids.add(id);
      for (const key of pairKeys(task)) pairs.add(key);
    }
  }
  return { ids, pairs };
}

/**
 * Builds the corpus and writes it (JSONL plus `<out>.meta.json`); returns the counts. Refuses evaluation
 * data: a source path naming "evaluation", or any task whose id or grids appear in an `exclude` set.
 */
export async function buildCorpus(options: CorpusOptions): Promise<CorpusCounts> {
  const o = parseOptions(CorpusOptionsSchema, options, 'pretrain-data');
  if (/evaluation/i.test(resolve(o.data))) {
    fail(`refusing ${o.data}: evaluation tasks are never used for pretraining`, 'data');
  }
  const { tasks } = await loadTasks(o.data);
  const excluded = await excludedSets(o);
  const overlap = Object.keys(tasks).filter((id) => excluded.ids.has(id));
  if (overlap.length > 0) {
    fail(
      `${overlap.length} task id(s) of ${o.data} are in an exclude set: ${overlap.slice(0, 5).join(', ')}`,
      'data',
    );
  }
  // A training task that shares a pair with an excluded task is left out: ARC-AGI-1's training task 40853293
  // reappears as evaluation task 070dd51e, and evaluation data must never be trained on.
  const sharedContent = Object.keys(tasks).filter((id) =>
    pairKeys(tasks[id]!).some((k) => excluded.pairs.has(k)),
  );

  const counts: CorpusCounts = {
    tasks: Object.keys(tasks).length,
    tasksSharedWithExcluded: sharedContent,
    tasksUsed: 0,
    tasksTooLong: 0,
    pairsDropped: 0,
    arcSamples: 0,
    samplesTooLong: 0,
    curriculumSamples: Object.fromEntries(CURRICULUM_KINDS.map((k) => [k, 0])),
    lines: 0,
    chars: 0,
    answerChars: 0,
    longestSample: 0,
  };
  await mkdir(dirname(resolve(o.out)), { recursive: true });
  const stream = createWriteStream(o.out, { encoding: 'utf8' });
  const hash = createHash('sha256');
  const write = (line: CorpusLine): void => {
    const text = `${JSON.stringify(line)}\n`;
    hash.update(text);
    stream.write(text);
    counts.lines++;
    counts.chars += line.prompt.length + line.answer.length;
    counts.answerChars += line.answer.length;
    counts.longestSample = Math.max(counts.longestSample, line.prompt.length + line.answer.length + 1);
  };

  const skip = new Set(sharedContent);
  for (const id of Object.keys(tasks).sort()) {
    if (skip.has(id)) continue;
    const task = tasks[id]!;
    const pairs: Example[] = [
      ...task.train,
      ...(o.useTest
        ? task.test.flatMap((p) => (p.output ? [{ input: p.input, output: p.output }] : []))
        : []),
    ];
    const kept = fitPairs(pairs, o);
    if (kept === undefined) {
      counts.tasksTooLong++;
      continue;
    }
    counts.pairsDropped += pairs.length - kept.length;
    const keptPairs = kept.map((i) => pairs[i]!);
    const samples = buildTrainingSamples(
      { train: keptPairs, test: [{ input: keptPairs[0]!.input }] },
      {
        seed: o.seed,
        maxSamples: o.perTask,
        augmentationsPerPair: Math.ceil(o.perTask / keptPairs.length),
      },
      id,
    );
    let used = 0;
    for (const s of samples) {
      const line = corpusLine(id, 'arc', s.train, s.target, o.format);
      if (line.prompt.length + line.answer.length + 1 > o.maxChars) {
        counts.samplesTooLong++;
        continue;
      }
      write(line);
      used++;
    }
    counts.arcSamples += used;
    if (used > 0) counts.tasksUsed++;
  }

  const rng = createRng(deriveSeed(o.seed, 'curriculum'));
  for (let n = 0; n < o.curriculum; n++) {
    const line = curriculumSample(rng, n, o);
    if (line.prompt.length + line.answer.length + 1 > o.maxChars) continue;
    write(line);
    counts.curriculumSamples[line.kind] = (counts.curriculumSamples[line.kind] ?? 0) + 1;
  }
  await new Promise<void>((done, error) => stream.end((e?: Error | null) => (e ? error(e) : done())));

  const { out, ...settings } = o;
  const meta = {
    settings: {
      ...settings,
      data: resolve(o.data),
      exclude: o.exclude.map((p) => resolve(p)),
    },
    excludedTasks: excluded.ids.size,
    counts,
    sha256: hash.digest('hex'),
    createdAt: new Date().toISOString(),
  };
  await writeFile(`${out}.meta.json`, `${JSON.stringify(meta, null, 2)}\n`);
  return counts;
}

// ---------------------------------------------------------------------------------------------- CLI

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' },
      data: { type: 'string' },
      exclude: { type: 'string', multiple: true },
      seed: { type: 'string' },
      'per-task': { type: 'string' },
      'max-chars': { type: 'string' },
      curriculum: { type: 'string' },
      'curriculum-max-side': { type: 'string' },
      format: { type: 'string' },
      'no-test': { type: 'boolean' },
    },
    strict: true,
  });
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  if (values.out === undefined) {
    console.error('error: --out <file.jsonl> is required');
    process.exit(2);
  }
  const counts = await buildCorpus({
    out: values.out,
    data: values.data,
    exclude: values.exclude,
    seed: num(values.seed),
    perTask: num(values['per-task']),
    maxChars: num(values['max-chars']),
    curriculum: num(values.curriculum),
    curriculumMaxSide: num(values['curriculum-max-side']),
    format: values.format as CorpusOptions['format'],
    useTest: values['no-test'] !== true,
  });
  const gen = Object.values(counts.curriculumSamples).reduce((a, b) => a + b, 0);
  console.log(
    [
      `ARC training tasks: ${counts.tasks} (${counts.tasksUsed} used, ${counts.tasksTooLong} too long even with 2 pairs, ` +
        `${counts.pairsDropped} pairs dropped to fit, left out as shared with an excluded set: ` +
        `${counts.tasksSharedWithExcluded.join(', ') || 'none'})`,
      `ARC samples: ${counts.arcSamples} (${counts.samplesTooLong} skipped as too long)`,
      `curriculum samples: ${gen} (${Object.entries(counts.curriculumSamples)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')})`,
      `lines: ${counts.lines}, chars: ${counts.chars} (answers ${counts.answerChars}), ` +
        `mean ${Math.round(counts.chars / Math.max(1, counts.lines))}, longest ${counts.longestSample}`,
      `wrote ${values.out} and ${values.out}.meta.json`,
    ].join('\n'),
  );
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    // parseArgs throws a TypeError with a code for an unknown or malformed flag: a usage error.
    process.exit(error instanceof ArcTtftError || !(error instanceof TypeError && 'code' in error) ? 1 : 2);
  });
}
