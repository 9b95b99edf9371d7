/**
 * Invertible augmentations of ARC tasks: the 8 rotations/flips of the dihedral group D4, colour
 * permutations, and train-pair order. Every function is pure and seeded, and every augmentation of a
 * grid can be undone exactly ({@link invertAugmentationGrid}), so predictions made on an augmented
 * task can be mapped back and voted on.
 *
 * @module
 */
import { z } from 'zod';
import { checkGrid, checkTask, parseOptions, parseWith } from './data/validate.js';
import { ValidationError } from './errors.js';
import { createRng, type Rng } from './rng.js';
import { CellSchema, type Example, type Grid, SeedSchema, type Task, type TestExample } from './schemas.js';

// ---------------------------------------------------------------------------------------------
// Geometric transforms (D4)
// ---------------------------------------------------------------------------------------------

/**
 * Names of the 8 elements of the dihedral group D4, in canonical order. Rotations are clockwise;
 * `flipH` mirrors left↔right (reverses each row), `flipV` mirrors top↔bottom (reverses the rows),
 * `transpose` mirrors across the main diagonal, `antiTranspose` across the anti-diagonal.
 */
export const TRANSFORM_NAMES = [
  'identity',
  'rot90',
  'rot180',
  'rot270',
  'flipH',
  'flipV',
  'transpose',
  'antiTranspose',
] as const;

/** One of the 8 rotations/flips of a grid (see {@link TRANSFORM_NAMES}). */
export const TransformSchema = z.enum(TRANSFORM_NAMES, {
  error: `a transform must be one of ${TRANSFORM_NAMES.join(', ')}`,
});
/** One of the 8 rotations/flips of a grid: `identity`, `rot90`, `rot180`, `rot270`, `flipH`, `flipV`, `transpose`, `antiTranspose`. */
export type Transform = z.infer<typeof TransformSchema>;

/** All 8 transforms, identity first. */
export const ALL_TRANSFORMS: readonly Transform[] = Object.freeze([...TRANSFORM_NAMES]);

const TRANSFORM_SET: ReadonlySet<string> = new Set(TRANSFORM_NAMES);

function checkTransform(t: unknown, where: string): Transform {
  if (typeof t === 'string' && TRANSFORM_SET.has(t)) return t as Transform;
  return parseWith(TransformSchema, t, { source: where });
}

function buildGrid(rows: number, cols: number, cell: (r: number, c: number) => number): Grid {
  const out: Grid = new Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = new Array<number>(cols);
    for (let c = 0; c < cols; c++) row[c] = cell(r, c);
    out[r] = row;
  }
  return out;
}

function transformUnchecked(g: Grid, t: Transform): Grid {
  const h = g.length;
  const w = g[0]?.length ?? 0;
  switch (t) {
    case 'identity':
      return buildGrid(h, w, (r, c) => g[r]![c]!);
    case 'rot90':
      return buildGrid(w, h, (r, c) => g[h - 1 - c]![r]!);
    case 'rot180':
      return buildGrid(h, w, (r, c) => g[h - 1 - r]![w - 1 - c]!);
    case 'rot270':
      return buildGrid(w, h, (r, c) => g[c]![w - 1 - r]!);
    case 'flipH':
      return buildGrid(h, w, (r, c) => g[r]![w - 1 - c]!);
    case 'flipV':
      return buildGrid(h, w, (r, c) => g[h - 1 - r]![c]!);
    case 'transpose':
      return buildGrid(w, h, (r, c) => g[c]![r]!);
    case 'antiTranspose':
      return buildGrid(w, h, (r, c) => g[h - 1 - c]![w - 1 - r]!);
  }
}

/**
 * Applies one of the 8 rotations/flips to a grid, returning a new grid (the input is not touched).
 * `rot90`, `rot270`, `transpose` and `antiTranspose` swap the grid's height and width.
 */
export function applyTransform(grid: Grid, t: Transform): Grid {
  return transformUnchecked(
    checkGrid(grid, { source: 'applyTransform grid' }),
    checkTransform(t, 'applyTransform'),
  );
}

/** The transform that undoes `t`: `rot90` ↔ `rot270`; every other element is its own inverse. */
export function inverseTransform(t: Transform): Transform {
  const checked = checkTransform(t, 'inverseTransform');
  if (checked === 'rot90') return 'rot270';
  if (checked === 'rot270') return 'rot90';
  return checked;
}

// A 2×3 grid with distinct cells tells all 8 transforms apart, so composition is read off its images.
const PROBE: Grid = [
  [0, 1, 2],
  [3, 4, 5],
];
let composeTable: Map<string, Transform> | undefined;

/**
 * The single transform equal to applying `first` and then `second`:
 * `applyTransform(applyTransform(g, first), second)` equals `applyTransform(g, composeTransforms(first, second))`.
 */
export function composeTransforms(first: Transform, second: Transform): Transform {
  const a = checkTransform(first, 'composeTransforms');
  const b = checkTransform(second, 'composeTransforms');
  if (composeTable === undefined) {
    const byImage = new Map<string, Transform>();
    for (const t of TRANSFORM_NAMES) byImage.set(JSON.stringify(transformUnchecked(PROBE, t)), t);
    const table = new Map<string, Transform>();
    for (const x of TRANSFORM_NAMES) {
      for (const y of TRANSFORM_NAMES) {
        const image = JSON.stringify(transformUnchecked(transformUnchecked(PROBE, x), y));
        table.set(`${x}>${y}`, byImage.get(image)!);
      }
    }
    composeTable = table;
  }
  return composeTable.get(`${a}>${b}`)!;
}

// ---------------------------------------------------------------------------------------------
// Colour permutations
// ---------------------------------------------------------------------------------------------

/** The colour map that changes nothing: `[0, 1, …, 9]`. */
export const IDENTITY_COLOUR_MAP: readonly number[] = Object.freeze([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

/** A permutation of the colours 0–9: `map[c]` is the new colour of cell colour `c`. */
export const ColourMapSchema = z
  .array(CellSchema, { error: 'a colour map must be an array of 10 colours' })
  .length(10, { error: 'a colour map must have exactly 10 entries (one per colour 0–9)' })
  .superRefine((map, ctx) => {
    const seen = new Map<number, number>();
    map.forEach((colour, i) => {
      const earlier = seen.get(colour);
      if (earlier !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [i],
          message: `a colour map must be a permutation of 0–9: colour ${colour} appears at ${earlier} and ${i}`,
        });
      } else seen.set(colour, i);
    });
  });
/** A permutation of the colours 0–9: `map[c]` is the new colour of cell colour `c`. */
export type ColourMap = number[];

function isPermutation10(map: unknown): map is ColourMap {
  if (!Array.isArray(map) || map.length !== 10) return false;
  let mask = 0;
  for (const v of map) {
    if (!Number.isInteger(v) || v < 0 || v > 9) return false;
    mask |= 1 << v;
  }
  return mask === 0x3ff;
}

function checkColourMap(map: unknown, where: string): ColourMap {
  if (isPermutation10(map)) return map;
  return parseWith(ColourMapSchema, map, { source: where });
}

/** Validates a colour map (a permutation of 0–9), throwing a {@link ValidationError} otherwise. */
export function validateColourMap(map: unknown): ColourMap {
  return checkColourMap(map, 'colour map');
}

/** Options of {@link randomColourMap}. */
export const RandomColourMapOptionsSchema = z.object({
  /**
   * Keep colour 0 (black, usually the background) fixed and permute only 1–9.
   * @default true
   */
  keepBackground: z.boolean().default(true),
});
/** Options of {@link randomColourMap}. */
export type RandomColourMapOptions = z.input<typeof RandomColourMapOptionsSchema>;

function randomMapUnchecked(rng: Rng, keepBackground: boolean): ColourMap {
  return keepBackground ? [0, ...rng.shuffle([1, 2, 3, 4, 5, 6, 7, 8, 9])] : rng.shuffle(IDENTITY_COLOUR_MAP);
}

/** A uniformly random colour permutation drawn from `rng` (colour 0 kept fixed when `keepBackground`). */
export function randomColourMap(rng: Rng, options?: RandomColourMapOptions): ColourMap {
  const o = parseOptions(RandomColourMapOptionsSchema, options, 'randomColourMap');
  return randomMapUnchecked(rng, o.keepBackground);
}

function recolourUnchecked(g: Grid, map: readonly number[]): Grid {
  return g.map((row) => row.map((cell) => map[cell]!));
}

/** Recolours every cell `c` of a grid to `map[c]`, returning a new grid. */
export function applyColourMap(grid: Grid, map: ColourMap): Grid {
  return recolourUnchecked(
    checkGrid(grid, { source: 'applyColourMap grid' }),
    checkColourMap(map, 'applyColourMap map'),
  );
}

/** The colour map that undoes `map`: `invertColourMap(map)[map[c]] === c`. */
export function invertColourMap(map: ColourMap): ColourMap {
  return invertUnchecked(checkColourMap(map, 'invertColourMap map'));
}

function invertUnchecked(map: readonly number[]): ColourMap {
  const inv = new Array<number>(10);
  map.forEach((to, from) => {
    inv[to] = from;
  });
  return inv;
}

// ---------------------------------------------------------------------------------------------
// Augmentations of whole tasks
// ---------------------------------------------------------------------------------------------

/**
 * One augmentation, as plain serialisable data: a transform, a colour permutation, and optionally
 * the order (and selection) of train pairs.
 */
export const AugmentationSchema = z.object({
  /** Rotation/flip applied to every grid. */
  transform: TransformSchema,
  /** Colour permutation applied to every cell. */
  colourMap: ColourMapSchema,
  /**
   * Indices into the original `task.train`, in the order the augmented task shows them. A
   * permutation reorders the pairs; leaving indices out also drops pairs (leave-one-out contexts
   * do). Absent: all pairs in their original order.
   */
  trainOrder: z
    .array(
      z
        .number()
        .int({ error: 'a train index must be an integer' })
        .min(0, { error: 'a train index must be ≥ 0' }),
    )
    .superRefine((order, ctx) => {
      const seen = new Set<number>();
      order.forEach((index, i) => {
        if (seen.has(index)) {
          ctx.addIssue({ code: 'custom', path: [i], message: `train index ${index} appears twice` });
        }
        seen.add(index);
      });
    })
    .optional(),
});
/** One augmentation: `{ transform, colourMap, trainOrder? }`, plain serialisable data. */
export type Augmentation = z.infer<typeof AugmentationSchema>;

/** Validates an augmentation (transform name, colour permutation, distinct train indices). */
export function validateAugmentation(value: unknown, source = 'augmentation'): Augmentation {
  const candidate = value as Partial<Augmentation> | null;
  // Fast path for well-formed data; zod only runs to explain what is wrong.
  if (
    candidate !== null &&
    typeof candidate === 'object' &&
    typeof candidate.transform === 'string' &&
    TRANSFORM_SET.has(candidate.transform) &&
    isPermutation10(candidate.colourMap) &&
    (candidate.trainOrder === undefined ||
      (Array.isArray(candidate.trainOrder) &&
        candidate.trainOrder.every((i) => Number.isInteger(i) && i >= 0) &&
        new Set(candidate.trainOrder).size === candidate.trainOrder.length))
  ) {
    return candidate as Augmentation;
  }
  return parseWith(AugmentationSchema, value, { source });
}

/** A fresh augmentation that changes nothing (identity transform, identity colours, original train order). */
export function identityAugmentation(): Augmentation {
  return { transform: 'identity', colourMap: [...IDENTITY_COLOUR_MAP] };
}

function augmentGridUnchecked(g: Grid, aug: Augmentation): Grid {
  // Colour and geometry commute (one acts on values, the other on positions), so the order is free.
  return transformUnchecked(recolourUnchecked(g, aug.colourMap), aug.transform);
}

/** Applies an augmentation's transform and colour map to one grid (train order does not apply to a grid). */
export function applyAugmentationGrid(grid: Grid, aug: Augmentation): Grid {
  return augmentGridUnchecked(
    checkGrid(grid, { source: 'applyAugmentationGrid grid' }),
    validateAugmentation(aug, 'applyAugmentationGrid augmentation'),
  );
}

/**
 * Undoes an augmentation on one grid, e.g. a model's prediction for an augmented test input:
 * `invertAugmentationGrid(applyAugmentationGrid(g, aug), aug)` equals `g`.
 */
export function invertAugmentationGrid(grid: Grid, aug: Augmentation): Grid {
  const a = validateAugmentation(aug, 'invertAugmentationGrid augmentation');
  const g = checkGrid(grid, { source: 'invertAugmentationGrid grid' });
  return recolourUnchecked(
    transformUnchecked(g, inverseTransform(a.transform)),
    invertUnchecked(a.colourMap),
  );
}

/** @internal Augments one train pair; both grids must already be valid. */
export function augmentExampleUnchecked(example: Example, aug: Augmentation): Example {
  return {
    input: augmentGridUnchecked(example.input, aug),
    output: augmentGridUnchecked(example.output, aug),
  };
}

/** @internal Checks that every index of `order` names a train pair of a task with `trainCount` pairs. */
export function checkTrainIndices(
  order: readonly number[],
  trainCount: number,
  context: { taskId?: string | undefined; source: string; path: string },
): void {
  const bad = order.findIndex((i) => i >= trainCount);
  if (bad >= 0) {
    throw new ValidationError({
      taskId: context.taskId,
      source: context.source,
      issues: [
        {
          path: `${context.path}[${bad}]`,
          message: `train index ${order[bad]} is out of range: the task has ${trainCount} train pair(s)`,
        },
      ],
    });
  }
}

/**
 * Applies an augmentation to a whole task: every train and test grid (test outputs too, when known)
 * is transformed and recoloured, and the train pairs are reordered (and selected) by `trainOrder`.
 * Returns a new task; the input is not touched.
 */
export function applyAugmentation(task: Task, aug: Augmentation, taskId?: string): Task {
  const t = checkTask(task, { taskId });
  const a = validateAugmentation(aug, 'applyAugmentation augmentation');
  if (a.trainOrder !== undefined) {
    checkTrainIndices(a.trainOrder, t.train.length, {
      taskId,
      source: 'applyAugmentation augmentation',
      path: 'trainOrder',
    });
  }
  const order = a.trainOrder ?? t.train.map((_, i) => i);
  return {
    train: order.map((i) => augmentExampleUnchecked(t.train[i]!, a)),
    test: t.test.map((pair): TestExample => {
      const input = augmentGridUnchecked(pair.input, a);
      return pair.output === undefined ? { input } : { input, output: augmentGridUnchecked(pair.output, a) };
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Sampling augmentations
// ---------------------------------------------------------------------------------------------

/** How colours are permuted by {@link sampleAugmentations}. */
export const ColourPermutationSchema = z.enum(['none', 'keep-background', 'all'], {
  error: 'colourPermutation must be "none", "keep-background" or "all"',
});
/** `none`: colours untouched; `keep-background`: 0 fixed, 1–9 permuted; `all`: all of 0–9 permuted. */
export type ColourPermutation = z.infer<typeof ColourPermutationSchema>;

/** Augmentation options shared by {@link sampleAugmentations} and the training-sample builder. */
export const AugmentationOptionsSchema = z.object({
  /**
   * Transforms to draw from (duplicates ignored; used in canonical order).
   * @default all 8
   */
  transforms: z
    .array(TransformSchema)
    .min(1, { error: 'transforms must name at least one transform' })
    .default(() => [...ALL_TRANSFORMS]),
  /**
   * How colours are permuted.
   * @default 'keep-background'
   */
  colourPermutation: ColourPermutationSchema.default('keep-background'),
  /**
   * With `'keep-background'`: probability that colour 0 stays fixed in a map; otherwise all 10
   * colours are permuted (arc24 uses 0.9).
   * @default 1
   */
  keepBackgroundProbability: z.number().min(0).max(1).default(1),
  /**
   * Shuffle the order of train pairs (needs `trainSize` or `trainIndices` in {@link sampleAugmentations}).
   * @default true
   */
  shuffleTrain: z.boolean().default(true),
  /**
   * Make the first augmentation the identity (un-augmented task).
   * @default true
   */
  includeIdentity: z.boolean().default(true),
});

/** Augmentation options shared by {@link sampleAugmentations} and the training-sample builder. */
export type AugmentationOptions = z.input<typeof AugmentationOptionsSchema>;

/**
 * Most augmentations one call draws, and most train pairs it orders: far past any use (8 geometries × colour maps ×
 * orders), and a bound on the work a mistyped count (1e9) would start.
 * @internal
 */
export const MAX_AUGMENTATIONS = 10_000;
const MAX_TRAIN_PAIRS = 1_000;

/** Options of {@link sampleAugmentations}. */
export const SampleAugmentationsOptionsSchema = AugmentationOptionsSchema.extend({
  /** Number of train pairs: each augmentation then gets a `trainOrder`, a permutation of `0…trainSize-1`. */
  trainSize: z.number().int().min(0).max(MAX_TRAIN_PAIRS).optional(),
  /** Train indices to order: each augmentation then gets a `trainOrder`, a permutation of exactly these. */
  trainIndices: z
    .array(z.number().int().min(0))
    .max(MAX_TRAIN_PAIRS)
    .refine((xs) => new Set(xs).size === xs.length, { error: 'trainIndices must be distinct' })
    .optional(),
}).refine((o) => o.trainSize === undefined || o.trainIndices === undefined, {
  error: 'give trainSize or trainIndices, not both',
  path: ['trainIndices'],
});
/** Options of {@link sampleAugmentations}. */
export type SampleAugmentationsOptions = z.input<typeof SampleAugmentationsOptionsSchema>;

const SampleArgsSchema = z.object({
  seed: SeedSchema,
  count: z
    .number()
    .int({ error: 'count must be an integer' })
    .min(0, { error: 'count must be ≥ 0' })
    .max(MAX_AUGMENTATIONS, { error: `count must be ≤ ${MAX_AUGMENTATIONS}` }),
});

function factorial(n: number): number {
  let f = 1;
  for (let i = 2; i <= n; i++) f *= i;
  return f;
}

/** A key that is equal for augmentations with the same effect on a task. */
function augmentationKey(aug: Augmentation): string {
  return `${aug.transform}|${aug.colourMap.join('')}|${aug.trainOrder?.join(',') ?? '*'}`;
}

/**
 * Draws `count` distinct augmentations, deterministically for a `seed`. The first is the identity
 * when `includeIdentity`; the transforms are cycled evenly (so `count ≥ 8` with all 8 transforms
 * covers every geometry, and inference votes over all of them), each with a random colour map and
 * train order. Returns fewer than `count` only when fewer distinct augmentations exist (e.g.
 * `colourPermutation: 'none'` without train shuffling has just one per transform).
 */
export function sampleAugmentations(
  seed: number,
  count: number,
  options?: SampleAugmentationsOptions,
): Augmentation[] {
  const args = parseWith(SampleArgsSchema, { seed, count }, { source: 'sampleAugmentations' });
  const o = parseOptions(SampleAugmentationsOptionsSchema, options, 'sampleAugmentations');
  const rng = createRng(args.seed);
  const wanted = new Set(o.transforms);
  const transforms = TRANSFORM_NAMES.filter((t) => wanted.has(t));
  const indices =
    o.trainIndices ??
    (o.trainSize === undefined ? undefined : Array.from({ length: o.trainSize }, (_, i) => i));

  const colourSpace =
    o.colourPermutation === 'none'
      ? 1
      : o.colourPermutation === 'keep-background' && o.keepBackgroundProbability >= 1
        ? factorial(9)
        : factorial(10);
  const orderSpace = indices !== undefined && o.shuffleTrain ? factorial(indices.length) : 1;
  const perTransformSpace = colourSpace * orderSpace;
  // Enough tries to find the last unseen element of a small space; large spaces rarely collide.
  const maxTries = Math.min(32 * perTransformSpace + 32, 4096);

  const drawColours = (): ColourMap => {
    if (o.colourPermutation === 'none') return [...IDENTITY_COLOUR_MAP];
    if (o.colourPermutation === 'all') return randomMapUnchecked(rng, false);
    // Draw only when needed so that probability 1 leaves the random sequence as with no coin flips.
    const keep = o.keepBackgroundProbability >= 1 || rng.next() < o.keepBackgroundProbability;
    return randomMapUnchecked(rng, keep);
  };
  const drawOrder = (): number[] | undefined => {
    if (indices === undefined) return undefined;
    return o.shuffleTrain ? rng.shuffle(indices) : indices.slice();
  };

  const out: Augmentation[] = [];
  const seen = new Set<string>();
  const used = new Map<Transform, number>();
  const exhausted = new Set<Transform>();
  const push = (aug: Augmentation): void => {
    out.push(aug);
    seen.add(augmentationKey(aug));
    used.set(aug.transform, (used.get(aug.transform) ?? 0) + 1);
    if ((used.get(aug.transform) ?? 0) >= perTransformSpace) exhausted.add(aug.transform);
  };

  if (args.count > 0 && o.includeIdentity) {
    const id: Augmentation = identityAugmentation();
    const order = indices?.slice();
    push(order === undefined ? id : { ...id, trainOrder: order });
  }
  // Continue the cycle after identity when identity is itself one of the cycled transforms.
  let cursor = o.includeIdentity && transforms[0] === 'identity' && args.count > 0 ? 1 : 0;
  while (out.length < args.count && transforms.some((t) => !exhausted.has(t))) {
    const transform = transforms[cursor % transforms.length]!;
    cursor++;
    if (exhausted.has(transform)) continue;
    let found = false;
    for (let attempt = 0; attempt < maxTries; attempt++) {
      const colourMap = drawColours();
      const trainOrder = drawOrder();
      const aug: Augmentation =
        trainOrder === undefined ? { transform, colourMap } : { transform, colourMap, trainOrder };
      if (!seen.has(augmentationKey(aug))) {
        push(aug);
        found = true;
        break;
      }
    }
    if (!found) exhausted.add(transform);
  }
  return out;
}
