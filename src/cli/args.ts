/**
 * Parsers of command-line values, shared by the commands: each throws commander's `InvalidArgumentError`,
 * which the CLI reports as a usage error (exit code 2). And the one way the commands print a failure.
 *
 * @module
 */
import { InvalidArgumentError } from 'commander';
import { ArcTtftError, BridgeError } from '../errors.js';
import { MAX_SEED, MAX_TIMEOUT_MS } from '../schemas.js';
import { EngineOptionsSchema } from '../ttft/engine.js';

/** A whole number ≥ 1 (not `''`, which `Number` reads as 0). */
export function positiveInt(value: string): number {
  const n = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/** A finite number > 0. */
export function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

/** A seed: a whole number from 0 to {@link MAX_SEED} (seeds are 32-bit; a wider one would collide). */
export function seed(value: string): number {
  const n = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_SEED) {
    throw new InvalidArgumentError(`expected a whole number from 0 to ${MAX_SEED}`);
  }
  return n;
}

/** `90`, `90s`, `15m`, `12h` → seconds, from 1 ms up to the longest timer (about 596 h). */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h)?$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected a duration like 90s, 15m or 12h');
  const scale = m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1;
  const seconds = Number(m[1]) * scale;
  if (Math.round(seconds * 1000) < 1) throw new InvalidArgumentError('expected a positive duration');
  if (seconds * 1000 > MAX_TIMEOUT_MS) {
    throw new InvalidArgumentError(
      `expected at most ${Math.floor(MAX_TIMEOUT_MS / 3_600_000)}h (the longest timer)`,
    );
  }
  return seconds;
}

/** Text that is not empty (an empty path would mean the current folder, or nothing). */
export function nonEmpty(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('expected a non-empty value');
  return value;
}

/** A torch device as the engine takes it: `auto`, `cpu`, `cuda` or `cuda:N`. */
export function deviceName(value: string): string {
  const r = EngineOptionsSchema.shape.device.safeParse(value);
  if (!r.success) throw new InvalidArgumentError('expected auto, cpu, cuda or cuda:N');
  return value;
}

/**
 * Prints a library error as the CLI's `error: …` line and sets exit code 1; anything else is a bug and is
 * thrown on. A Python exception shows its type and message (the library's message points at `.traceback`,
 * which a CLI user cannot reach); `verbose` adds the traceback, and a command with `--verbose` says so.
 */
export function printError(error: unknown, verbose?: boolean): void {
  if (!(error instanceof ArcTtftError)) throw error;
  if (error instanceof BridgeError && error.pythonType !== undefined && error.pythonMessage !== undefined) {
    process.stderr.write(`error: ${error.pythonType}: ${error.pythonMessage}\n`);
    if (error.pythonType === 'ModuleNotFoundError') {
      process.stderr.write(
        'hint: this Python lacks what the engine needs; `arc-ttft setup` creates the arc-ttft venv (used when --python and PYTHON_BIN are not given), or install python/requirements.txt into it\n',
      );
    }
    if (error.traceback !== undefined && verbose === true)
      process.stderr.write(error.traceback.replace(/\n?$/, '\n'));
    else if (error.traceback !== undefined && verbose === false) {
      process.stderr.write('(--verbose shows the Python traceback)\n');
    }
  } else {
    process.stderr.write(`error: ${error.message}\n`);
  }
  process.exitCode = 1;
}
