import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ALL_TRANSFORMS,
  type Augmentation,
  applyAugmentation,
  applyAugmentationGrid,
  applyColourMap,
  applyTransform,
  composeTransforms,
  IDENTITY_COLOUR_MAP,
  identityAugmentation,
  inverseTransform,
  invertAugmentationGrid,
  invertColourMap,
  randomColourMap,
  sampleAugmentations,
  type Transform,
  validateAugmentation,
  validateColourMap,
} from '../src/augment.js';
import { ValidationError } from '../src/errors.js';
import { gridKey, gridShape } from '../src/grid.js';
import { createRng } from '../src/rng.js';
import type { Grid, Task } from '../src/schemas.js';
import { HAS_SHARED_DATA, loadArc1Training, thrown } from './helpers.js';

/** Every ARC-AGI-1 training task, by id. */

function allGrids(task: Task): Grid[] {
  const grids: Grid[] = [];
  for (const p of task.train) grids.push(p.input, p.output);
  for (const p of task.test) {
    grids.push(p.input);
    if (p.output !== undefined) grids.push(p.output);
  }
  return grids;
}

/** Arbitrary rectangular grids, 1–30 × 1–30, cells 0–9. */
const gridArb: fc.Arbitrary<Grid> = fc
  .tuple(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 30 }))
  .chain(([rows, cols]) =>
    fc.array(fc.array(fc.integer({ min: 0, max: 9 }), { minLength: cols, maxLength: cols }), {
      minLength: rows,
      maxLength: rows,
    }),
  );
const transformArb = fc.constantFrom(...ALL_TRANSFORMS);
const seedArb = fc.integer({ min: 0, max: 0xffffffff });

/** A 2×3 grid whose cells are all distinct, so each transform gives a different image. */
const ASYM: Grid = [
  [1, 2, 3],
  [4, 5, 6],
];

describe('transforms', () => {
  it('follow the documented conventions (clockwise rotations, flipH mirrors left↔right)', () => {
    const expected: Record<Transform, Grid> = {
      identity: ASYM,
      rot90: [
        [4, 1],
        [5, 2],
        [6, 3],
      ],
      rot180: [
        [6, 5, 4],
        [3, 2, 1],
      ],
      rot270: [
        [3, 6],
        [2, 5],
        [1, 4],
      ],
      flipH: [
        [3, 2, 1],
        [6, 5, 4],
      ],
      flipV: [
        [4, 5, 6],
        [1, 2, 3],
      ],
      transpose: [
        [1, 4],
        [2, 5],
        [3, 6],
      ],
      antiTranspose: [
        [6, 3],
        [5, 2],
        [4, 1],
      ],
    };
    for (const t of ALL_TRANSFORMS) expect(applyTransform(ASYM, t), t).toEqual(expected[t]);
  });

  it('are 8 distinct elements and never mutate their input', () => {
    const before = gridKey(ASYM);
    const images = new Set(ALL_TRANSFORMS.map((t) => gridKey(applyTransform(ASYM, t))));
    expect(images.size).toBe(8);
    expect(gridKey(ASYM)).toBe(before);
    expect(applyTransform(ASYM, 'identity')).not.toBe(ASYM);
  });

  it.runIf(HAS_SHARED_DATA)('invert exactly on every grid of the ARC-AGI-1 training set', () => {
    const tasks = loadArc1Training();
    expect(tasks.size).toBe(400);
    let checked = 0;
    for (const task of tasks.values()) {
      for (const grid of allGrids(task)) {
        const [rows, cols] = gridShape(grid);
        for (const t of ALL_TRANSFORMS) {
          const out = applyTransform(grid, t);
          const swaps = t === 'rot90' || t === 'rot270' || t === 'transpose' || t === 'antiTranspose';
          expect(gridShape(out)).toEqual(swaps ? [cols, rows] : [rows, cols]);
          expect(applyTransform(out, inverseTransform(t))).toEqual(grid);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(400 * 8 * 4);
  });

  it('obey the group laws', () => {
    let g = ASYM;
    for (let i = 0; i < 4; i++) g = applyTransform(g, 'rot90');
    expect(g).toEqual(ASYM);
    expect(composeTransforms('rot90', 'rot90')).toBe('rot180');
    expect(composeTransforms('rot90', 'rot180')).toBe('rot270');
    expect(composeTransforms('flipH', 'flipV')).toBe('rot180');
    expect(composeTransforms('transpose', 'rot180')).toBe('antiTranspose');
    for (const a of ALL_TRANSFORMS) {
      expect(composeTransforms(a, inverseTransform(a))).toBe('identity');
      expect(composeTransforms(inverseTransform(a), a)).toBe('identity');
      expect(composeTransforms('identity', a)).toBe(a);
      expect(inverseTransform(inverseTransform(a))).toBe(a);
      for (const b of ALL_TRANSFORMS) {
        for (const c of ALL_TRANSFORMS) {
          // Associativity.
          expect(composeTransforms(composeTransforms(a, b), c)).toBe(
            composeTransforms(a, composeTransforms(b, c)),
          );
        }
      }
    }
  });

  it('compose as the table says on arbitrary grids', () => {
    fc.assert(
      fc.property(gridArb, transformArb, transformArb, (grid, a, b) => {
        const twice = applyTransform(applyTransform(grid, a), b);
        expect(twice).toEqual(applyTransform(grid, composeTransforms(a, b)));
        expect(applyTransform(applyTransform(grid, a), inverseTransform(a))).toEqual(grid);
      }),
      { numRuns: 150 },
    );
  });

  it('reject unknown names and malformed grids with ValidationError', () => {
    expect(() => applyTransform(ASYM, 'rot45' as Transform)).toThrow(ValidationError);
    expect(() => inverseTransform('mirror' as Transform)).toThrow(ValidationError);
    expect(() => applyTransform([[1, 2], [3]], 'rot90')).toThrow(ValidationError);
    expect(() => applyTransform([], 'rot90')).toThrow(ValidationError);
    expect(thrown(() => applyTransform([[1, 2], [3]], 'rot90')).path).toBe('[1]');
    // larger than ARC's 30 × 30, as the task schema says
    expect(() => applyTransform([new Array<number>(31).fill(0)], 'rot90')).toThrow(ValidationError);
  });
});

describe('colour maps', () => {
  it('randomColourMap is a permutation that keeps 0 when asked, and is seeded', () => {
    const rng = createRng(7);
    let movedZero = 0;
    for (let i = 0; i < 200; i++) {
      const kept = randomColourMap(rng);
      expect(validateColourMap(kept)).toEqual(kept);
      expect(kept[0]).toBe(0);
      const any = randomColourMap(rng, { keepBackground: false });
      expect([...any].sort()).toEqual([...IDENTITY_COLOUR_MAP]);
      if (any[0] !== 0) movedZero++;
    }
    expect(movedZero).toBeGreaterThan(100);
    expect(randomColourMap(createRng(3))).toEqual(randomColourMap(createRng(3)));
  });

  it('apply then invert is the identity on arbitrary grids', () => {
    fc.assert(
      fc.property(gridArb, seedArb, fc.boolean(), (grid, seed, keepBackground) => {
        const map = randomColourMap(createRng(seed), { keepBackground });
        const recoloured = applyColourMap(grid, map);
        expect(gridShape(recoloured)).toEqual(gridShape(grid));
        expect(applyColourMap(recoloured, invertColourMap(map))).toEqual(grid);
        expect(invertColourMap(invertColourMap(map))).toEqual(map);
      }),
      { numRuns: 100 },
    );
  });

  it('rejects non-permutations with ValidationError naming the entry', () => {
    const dup = [0, 1, 2, 3, 4, 5, 6, 7, 8, 8];
    expect(() => applyColourMap(ASYM, dup)).toThrow(ValidationError);
    expect(thrown(() => validateColourMap(dup)).path).toBe('[9]');
    expect(() => invertColourMap([0, 1, 2])).toThrow(ValidationError);
    expect(() => validateColourMap([0, 1, 2, 3, 4, 5, 6, 7, 8, 10])).toThrow(ValidationError);
    expect(() => validateColourMap([0, 1, 2, 3, 4, 5, 6, 7, 8, 9.5])).toThrow(ValidationError);
  });
});

describe('augmentations', () => {
  const task: Task = {
    train: [
      { input: [[1, 0]], output: [[2], [0]] },
      { input: [[3, 3, 0]], output: [[4, 0, 0]] },
      { input: [[5]], output: [[6]] },
    ],
    test: [{ input: [[7, 8]], output: [[9, 0, 1]] }, { input: [[1]] }],
  };

  it('identityAugmentation changes nothing and is a fresh object', () => {
    expect(applyAugmentation(task, identityAugmentation())).toEqual(task);
    expect(identityAugmentation()).not.toBe(identityAugmentation());
    expect(identityAugmentation().colourMap).not.toBe(IDENTITY_COLOUR_MAP);
  });

  it('applyAugmentation transforms, recolours and reorders all grids; the prediction inverts back', () => {
    fc.assert(
      fc.property(seedArb, (seed) => {
        const [aug] = sampleAugmentations(seed, 1, {
          includeIdentity: false,
          colourPermutation: 'all',
          trainSize: 3,
        });
        const out = applyAugmentation(task, aug!);
        expect(out.train).toHaveLength(3);
        aug!.trainOrder!.forEach((orig, pos) => {
          expect(out.train[pos]!.input).toEqual(applyAugmentationGrid(task.train[orig]!.input, aug!));
          expect(invertAugmentationGrid(out.train[pos]!.output, aug!)).toEqual(task.train[orig]!.output);
        });
        expect(invertAugmentationGrid(out.test[0]!.output!, aug!)).toEqual(task.test[0]!.output);
        expect(invertAugmentationGrid(out.test[1]!.input, aug!)).toEqual(task.test[1]!.input);
        expect(out.test[1]!.output).toBeUndefined();
        // Serialisable: a JSON round trip is the same augmentation.
        expect(JSON.parse(JSON.stringify(aug))).toEqual(aug);
      }),
      { numRuns: 50 },
    );
  });

  it('round-trips arbitrary grids under arbitrary sampled augmentations', () => {
    fc.assert(
      fc.property(gridArb, seedArb, fc.integer({ min: 1, max: 12 }), (grid, seed, count) => {
        for (const aug of sampleAugmentations(seed, count, { colourPermutation: 'all' })) {
          expect(invertAugmentationGrid(applyAugmentationGrid(grid, aug), aug)).toEqual(grid);
        }
      }),
      { numRuns: 60 },
    );
  });

  it.runIf(HAS_SHARED_DATA)(
    'invert every test output of the training set under sampled augmentations',
    () => {
      let i = 0;
      for (const [id, t] of loadArc1Training()) {
        const augs = sampleAugmentations(i++, 2, { includeIdentity: false, keepBackgroundProbability: 0.5 });
        for (const aug of augs) {
          const out = applyAugmentation(t, aug, id);
          out.test.forEach((pair, k) => {
            expect(invertAugmentationGrid(pair.output!, aug)).toEqual(t.test[k]!.output);
          });
        }
      }
    },
  );

  it('selects train pairs by trainOrder and validates it against the task', () => {
    const selected = applyAugmentation(task, { ...identityAugmentation(), trainOrder: [2, 0] });
    expect(selected.train).toEqual([task.train[2], task.train[0]]);
    expect(() => applyAugmentation(task, { ...identityAugmentation(), trainOrder: [0, 3] }, 'abc')).toThrow(
      /task "abc": trainOrder\[1\]: train index 3 is out of range/,
    );
    expect(() => applyAugmentation(task, { ...identityAugmentation(), trainOrder: [1, 1] })).toThrow(
      ValidationError,
    );
    expect(() => validateAugmentation({ transform: 'rot90', colourMap: [1, 0] })).toThrow(ValidationError);
    expect(() => applyAugmentation({ train: [], test: [] } as Task, identityAugmentation(), 'abc')).toThrow(
      ValidationError,
    );
  });
});

describe('sampleAugmentations', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    expect(sampleAugmentations(5, 16, { trainSize: 4 })).toEqual(
      sampleAugmentations(5, 16, { trainSize: 4 }),
    );
    expect(sampleAugmentations(5, 16)).not.toEqual(sampleAugmentations(6, 16));
  });

  it('starts with the identity, has no duplicates and spreads the transforms evenly', () => {
    fc.assert(
      fc.property(seedArb, fc.integer({ min: 8, max: 40 }), (seed, count) => {
        const augs = sampleAugmentations(seed, count, { trainSize: 3 });
        expect(augs).toHaveLength(count);
        expect(augs[0]).toEqual({ ...identityAugmentation(), trainOrder: [0, 1, 2] });
        expect(new Set(augs.map((a) => JSON.stringify(a))).size).toBe(count);
        const perTransform = ALL_TRANSFORMS.map((t) => augs.filter((a) => a.transform === t).length);
        expect(Math.min(...perTransform)).toBeGreaterThanOrEqual(1);
        expect(Math.max(...perTransform) - Math.min(...perTransform)).toBeLessThanOrEqual(1);
        for (const a of augs) {
          expect(a.colourMap[0]).toBe(0);
          expect([...a.trainOrder!].sort()).toEqual([0, 1, 2]);
        }
      }),
      { numRuns: 40 },
    );
  });

  it('honours the colour and transform options', () => {
    const none = sampleAugmentations(1, 30, { colourPermutation: 'none', shuffleTrain: false });
    // Only one augmentation per transform exists without colour or order changes.
    expect(none.map((a) => a.transform)).toEqual([...ALL_TRANSFORMS]);
    expect(none.every((a) => gridKey([a.colourMap]) === gridKey([[...IDENTITY_COLOUR_MAP]]))).toBe(true);
    expect(none.every((a) => a.trainOrder === undefined)).toBe(true);

    const all = sampleAugmentations(2, 200, { colourPermutation: 'all' });
    expect(all.filter((a) => a.colourMap[0] !== 0).length).toBeGreaterThan(100);
    const mostlyKept = sampleAugmentations(2, 200, { keepBackgroundProbability: 0.9 });
    const moved = mostlyKept.filter((a) => a.colourMap[0] !== 0).length;
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThan(60);

    const flips = sampleAugmentations(3, 10, {
      transforms: ['flipV', 'flipH', 'flipH'],
      includeIdentity: false,
    });
    expect(flips.map((a) => a.transform)).toEqual(
      Array.from({ length: 10 }, (_, i) => (i % 2 ? 'flipV' : 'flipH')),
    );
    const onlyRot = sampleAugmentations(3, 5, { transforms: ['rot90'], colourPermutation: 'none' });
    expect(onlyRot.map((a) => a.transform)).toEqual(['identity', 'rot90']);
    expect(sampleAugmentations(3, 0)).toEqual([]);
  });

  it('shuffles exactly the given train indices, and stops when the space is exhausted', () => {
    const augs = sampleAugmentations(4, 50, {
      trainIndices: [5, 2],
      colourPermutation: 'none',
      transforms: ['identity', 'rot180'],
    });
    // 2 transforms × 2 orders of 2 pairs.
    expect(augs).toHaveLength(4);
    expect(new Set(augs.map((a) => `${a.transform}${a.trainOrder}`))).toEqual(
      new Set(['identity5,2', 'identity2,5', 'rot1805,2', 'rot1802,5']),
    );
  });

  it('rejects bad arguments with ValidationError', () => {
    expect(() => sampleAugmentations(1.5, 3)).toThrow(ValidationError);
    expect(() => sampleAugmentations(1, -1)).toThrow(ValidationError);
    expect(() => sampleAugmentations(1, 3, { transforms: [] })).toThrow(ValidationError);
    expect(() => sampleAugmentations(1, 3, { keepBackgroundProbability: 2 })).toThrow(ValidationError);
    expect(() => sampleAugmentations(1, 3, { trainSize: 2, trainIndices: [0, 1] })).toThrow(ValidationError);
    expect(() => sampleAugmentations(1, 3, { transforms: ['spin' as Transform] })).toThrow(
      /sampleAugmentations options: transforms\[0\]/,
    );
  });

  it('produces plain data that validates', () => {
    for (const aug of sampleAugmentations(9, 12, { trainSize: 5 })) {
      const copy: Augmentation = JSON.parse(JSON.stringify(aug));
      expect(validateAugmentation(copy)).toEqual(aug);
    }
  });
});
