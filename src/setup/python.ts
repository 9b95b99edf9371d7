/**
 * Finding and inspecting Python interpreters, and running commands with their output streamed
 * line by line. Used by the environment setup and by the bridge's start checks.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { constants, statSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, isAbsolute, join, resolve, sep } from 'node:path';
import { SetupError } from '../errors.js';

/** Oldest Python the engine supports. */
export const MIN_PYTHON: readonly [number, number] = [3, 10];

/** What {@link probePython} found out about an interpreter. */
export interface PythonInfo {
  /** The command that was probed, as given. */
  readonly command: string;
  /** `sys.executable` as Python reports it. */
  readonly executable: string;
  /**
   * The interpreter that makes venvs: `executable`, or for a venv's own python the one the venv was made
   * from (a venv being replaced must not be rebuilt with its own, deleted, interpreter).
   */
  readonly baseExecutable: string;
  /** `major.minor.micro`, e.g. `3.11.7`. */
  readonly version: string;
  /** Major version, e.g. `3`. */
  readonly major: number;
  /** Minor version, e.g. `11`. */
  readonly minor: number;
  /** Whether the standard `venv` module imports. */
  readonly hasVenv: boolean;
  /** Whether `ensurepip` imports (Debian's python3 lacks it without `python3-venv`). */
  readonly hasEnsurepip: boolean;
}

/**
 * Absolute path of an executable: `command` itself when it contains a path separator (resolved
 * against the working folder), else the first match on `PATH`. `undefined` when none is found.
 */
export async function findExecutable(command: string): Promise<string | undefined> {
  const candidates: string[] = [];
  if (command.includes('/') || command.includes(sep) || isAbsolute(command)) {
    candidates.push(resolve(command));
  } else {
    const exts = process.platform === 'win32' ? ['', ...(process.env.PATHEXT ?? '.EXE').split(';')] : [''];
    for (const dir of (process.env.PATH ?? '').split(delimiter)) {
      if (dir === '') continue;
      for (const ext of exts) candidates.push(join(dir, command + ext));
    }
  }
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/** The outcome of {@link runCommand}. */
export interface CommandResult {
  /** Exit code (`null` when killed by a signal or when the command could not start). */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The last lines of stdout and stderr, interleaved as they came. */
  readonly tail: string;
  /** All of stdout. */
  readonly stdout: string;
  /** Set when the command could not be started at all (e.g. `ENOENT`). */
  readonly spawnError: Error | undefined;
}

/** Runs `command args…`, streaming each output line to `onLine`; never rejects. */
export function runCommand(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; tailLines?: number } = {},
  onLine?: (line: string) => void,
): Promise<CommandResult> {
  const tailLines = options.tailLines ?? 40;
  return new Promise((resolvePromise) => {
    const lines: string[] = [];
    let stdout = '';
    const partial = { stdout: '', stderr: '' };
    const push = (line: string): void => {
      lines.push(line);
      if (lines.length > tailLines) lines.shift();
      onLine?.(line);
    };
    const feed = (stream: 'stdout' | 'stderr', chunk: string): void => {
      const text = partial[stream] + chunk;
      const parts = text.split(/\r?\n/);
      partial[stream] = parts.pop() ?? '';
      for (const line of parts) push(line);
    };
    const child = spawn(command, [...args], {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let spawnError: Error | undefined;
    child.on('error', (error) => {
      spawnError = error;
    });
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      feed('stdout', chunk);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => feed('stderr', chunk));
    child.on('close', (code, signal) => {
      for (const stream of ['stdout', 'stderr'] as const) if (partial[stream] !== '') push(partial[stream]);
      resolvePromise({ code, signal, tail: lines.join('\n'), stdout, spawnError });
    });
  });
}

// Compatible with any Python (even 2.x), so that "too old" can be reported instead of a syntax error.
const PROBE = [
  'import json, sys',
  'info = {"executable": sys.executable, "version": "%d.%d.%d" % tuple(sys.version_info[:3]),',
  '        "major": sys.version_info[0], "minor": sys.version_info[1],',
  '        "base": getattr(sys, "_base_executable", "") if sys.prefix != sys.base_prefix else sys.executable}',
  'for name in ("venv", "ensurepip"):',
  '    try:',
  '        __import__(name)',
  '        info[name] = True',
  '    except Exception:',
  '        info[name] = False',
  'print(json.dumps(info))',
].join('\n');

const probes = new Map<string, Promise<PythonInfo>>();

/**
 * Runs `command` to learn its version and whether it has `venv`/`ensurepip`. Results are cached per
 * command for the life of the process (failures are not).
 *
 * @throws {SetupError} `python_missing` when it cannot be run, `python_too_old` below Python 3.10.
 */
export function probePython(command: string): Promise<PythonInfo> {
  let probe = probes.get(command);
  if (probe === undefined) {
    probe = probeUncached(command);
    probes.set(command, probe);
    probe.catch(() => probes.delete(command));
  }
  return probe;
}

async function probeUncached(command: string): Promise<PythonInfo> {
  const found = await findExecutable(command);
  if (found === undefined) {
    throw new SetupError({
      reason: 'python_missing',
      message: `Python interpreter not found: "${command}" (set PYTHON_BIN or pass --python)`,
    });
  }
  const run = await runCommand(found, ['-c', PROBE], { env: { ...process.env, PYTHONNOUSERSITE: '1' } });
  const line = run.stdout.trim().split('\n').pop() ?? '';
  let raw: Record<string, unknown> | undefined;
  try {
    raw = run.code === 0 ? (JSON.parse(line) as Record<string, unknown>) : undefined;
  } catch {
    raw = undefined;
  }
  if (raw === undefined || typeof raw.version !== 'string') {
    throw new SetupError({
      reason: 'python_missing',
      message: `"${command}" (${found}) did not run as a Python interpreter (exit code ${run.code})`,
      output: run.tail,
      cause: run.spawnError,
    });
  }
  const info: PythonInfo = {
    command,
    executable: typeof raw.executable === 'string' && raw.executable !== '' ? raw.executable : found,
    baseExecutable: typeof raw.base === 'string' && raw.base !== '' ? raw.base : found,
    version: raw.version,
    major: Number(raw.major),
    minor: Number(raw.minor),
    hasVenv: raw.venv === true,
    hasEnsurepip: raw.ensurepip === true,
  };
  const [minMajor, minMinor] = MIN_PYTHON;
  if (info.major < minMajor || (info.major === minMajor && info.minor < minMinor)) {
    throw new SetupError({
      reason: 'python_too_old',
      message: `"${command}" is Python ${info.version}; arc-ttft needs Python ${minMajor}.${minMinor} or newer`,
    });
  }
  return info;
}
