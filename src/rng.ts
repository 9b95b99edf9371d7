/**
 * Seeded pseudo-random numbers, so that every augmentation, shuffle and sample choice is reproducible.
 *
 * @module
 */
import { ValidationError } from './errors.js';

/** A seeded random source. */
export interface Rng {
  /** Uniform float in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n); `n` must be a whole number from 1 to 2^32 (else a `ValidationError`). */
  int(n: number): number;
  /** A shuffled copy of `items` (Fisher–Yates). */
  shuffle<T>(items: readonly T[]): T[];
}

/** 32-bit FNV-1a hash of a string, for turning ids into seeds. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Combines a seed with further parts (e.g. a task id) into a new 32-bit seed. */
export function deriveSeed(seed: number, ...parts: readonly (string | number)[]): number {
  let h = seed >>> 0;
  for (const part of parts) h = hashString(`${h}:${part}`);
  return h;
}

/** A mulberry32 generator: small, fast and good enough for shuffles. */
export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => {
    // Past 2^32 the 32-bit draws leave gaps; below 1 there is no integer to return (-5 gave -4).
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) {
      throw new ValidationError({
        source: 'rng.int',
        issues: [{ path: 'n', message: `n must be a whole number from 1 to 2^32, got ${String(n)}` }],
      });
    }
    return Math.floor(next() * n);
  };
  return {
    next,
    int,
    shuffle<T>(items: readonly T[]): T[] {
      const out = items.slice();
      for (let i = out.length - 1; i > 0; i--) {
        const j = int(i + 1);
        [out[i], out[j]] = [out[j]!, out[i]!];
      }
      return out;
    },
  };
}
