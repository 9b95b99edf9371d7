/** The CLI's value parsers (src/cli/args.ts): what each accepts, and the usage errors for the rest. */
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { deviceName, nonEmpty, parseDuration, positiveInt, positiveNumber, seed } from '../src/cli/args.js';
import { splitCommand } from '../src/cli/commands/split.js';

describe('CLI value parsers', () => {
  it('read whole numbers, refusing empty text (Number reads it as 0) and integers past the safe range', () => {
    expect([positiveInt('3'), seed('0'), seed('4294967295')]).toEqual([3, 0, 2 ** 32 - 1]);
    for (const bad of ['', ' ', '0', '-1', '1.5', '1e30', 'x']) {
      expect(() => positiveInt(bad), bad).toThrow(InvalidArgumentError);
    }
    // Seeds are 32-bit: a negative or wider one would run as its low 32 bits.
    for (const bad of ['', '1e30', '2.5', '-1', '4294967296']) {
      expect(() => seed(bad), bad).toThrow(InvalidArgumentError);
    }
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

  it('refuse an empty path (it would mean the current folder) and a device the engine does not take', async () => {
    expect(nonEmpty('out')).toBe('out');
    for (const bad of ['', '  ']) expect(() => nonEmpty(bad)).toThrow(InvalidArgumentError);
    expect(['auto', 'cpu', 'cuda', 'cuda:1'].map(deviceName)).toEqual(['auto', 'cpu', 'cuda', 'cuda:1']);
    for (const bad of ['gpu', 'cuda:', 'mps', '']) expect(() => deviceName(bad), bad).toThrow(/cuda:N/);
    // As commander reports it: a usage error naming the flag, before anything is written.
    const split = splitCommand()
      .exitOverride()
      .configureOutput({ writeErr: () => {} });
    await expect(split.parseAsync(['tasks.json', '--out', ''], { from: 'user' })).rejects.toMatchObject({
      code: 'commander.invalidArgument',
      message: expect.stringContaining("option '-o, --out <dir>' argument '' is invalid"),
    });
  });
});
