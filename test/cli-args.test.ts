/** The CLI's value parsers (src/cli/args.ts): what each accepts, and the usage errors for the rest. */
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { integer, parseDuration, positiveInt, positiveNumber } from '../src/cli/args.js';

describe('CLI value parsers', () => {
  it('read whole numbers, refusing empty text (Number reads it as 0) and integers past the safe range', () => {
    expect([positiveInt('3'), integer('-2'), integer('0')]).toEqual([3, -2, 0]);
    for (const bad of ['', ' ', '0', '-1', '1.5', '1e30', 'x']) {
      expect(() => positiveInt(bad), bad).toThrow(InvalidArgumentError);
    }
    for (const bad of ['', '1e30', '2.5']) expect(() => integer(bad), bad).toThrow(InvalidArgumentError);
    expect(positiveNumber('1e-4')).toBe(1e-4);
    expect(() => positiveNumber('0')).toThrow(InvalidArgumentError);
  });

  it('read durations from 1 ms up to the longest timer', () => {
    expect([parseDuration('90'), parseDuration('90s'), parseDuration('15m'), parseDuration('12h')]).toEqual([
      90, 90, 900, 43_200,
    ]);
    expect(parseDuration('596h')).toBe(596 * 3600);
    expect(() => parseDuration('597h')).toThrow(/at most 596h/);
    expect(() => parseDuration('0.0001')).toThrow(/positive duration/);
    expect(() => parseDuration('10d')).toThrow(/duration like/);
  });
});
