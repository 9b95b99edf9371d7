import { chmodSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { setupCommand } from '../src/cli/commands/setup.js';
import { FileError, SetupError } from '../src/errors.js';
import { packageRoot, pythonPackageDir, requirementsFile, sampleDataDir } from '../src/paths.js';
import {
  ensurePythonEnv,
  requirementsHash,
  resolvePythonBin,
  VENV_MARKER,
  venvCacheDir,
  venvPython,
} from '../src/setup/env.js';
import { findExecutable, probePython, runCommand } from '../src/setup/python.js';
import { ROOT } from './helpers.js';

const TMP = mkdtempSync(join(tmpdir(), 'arc-ttft-setup-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

/** Runs `fn` with some environment variables set (or unset with `undefined`), then restores them. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (values: Record<string, string | undefined>): void => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

/** A fake interpreter that answers the probe with the given version and module availability. */
function fakePython(name: string, version: string, modules: { venv: boolean; ensurepip: boolean }): string {
  const [major, minor] = version.split('.').map(Number);
  const file = join(TMP, name);
  const info = JSON.stringify({ executable: file, version, major, minor, ...modules });
  writeFileSync(file, `#!/bin/sh\necho '${info}'\n`);
  chmodSync(file, 0o755);
  return file;
}

describe('paths', () => {
  it('finds the package root and its folders', () => {
    expect(packageRoot()).toBe(ROOT);
    expect(pythonPackageDir()).toBe(join(ROOT, 'python'));
    expect(requirementsFile()).toBe(join(ROOT, 'python', 'requirements.txt'));
    expect(sampleDataDir()).toBe(join(ROOT, 'data', 'sample'));
  });
});

describe('python discovery', () => {
  it('finds executables on PATH and by path', async () => {
    const python = await findExecutable('python3');
    expect(python).toBeDefined();
    expect(await findExecutable(python!)).toBe(python);
    expect(await findExecutable('no-such-command-xyz')).toBeUndefined();
  });

  it('probes a real interpreter', async () => {
    const info = await probePython('python3');
    expect(info.major).toBe(3);
    expect(info.minor).toBeGreaterThanOrEqual(10);
    expect(info.version).toMatch(/^3\.\d+\.\d+$/);
  });

  it('reports a missing or too old interpreter with a typed error', async () => {
    await expect(probePython(join(TMP, 'nope', 'python3'))).rejects.toMatchObject({
      name: 'SetupError',
      reason: 'python_missing',
    });
    const old = fakePython('old-python', '3.8.10', { venv: true, ensurepip: true });
    await expect(probePython(old)).rejects.toMatchObject({ reason: 'python_too_old' });
  });

  it('hashes requirements with the Python version', () => {
    const a = requirementsHash('numpy==2.0\n', '3.11.7');
    expect(a).toMatch(/^[0-9a-f]{16}$/);
    expect(requirementsHash('numpy==2.0\r\n', '3.11.7')).toBe(a);
    expect(requirementsHash('numpy==2.0\n', '3.12.1')).not.toBe(a);
    expect(requirementsHash('numpy==2.1\n', '3.11.7')).not.toBe(a);
  });
});

describe('ensurePythonEnv', () => {
  const requirements = join(TMP, 'requirements.txt');
  const venvDir = join(TMP, 'venv');
  let saved: string | undefined;
  beforeEach(() => {
    saved = process.env.PYTHON_BIN;
    delete process.env.PYTHON_BIN;
  });
  afterEach(() => {
    if (saved !== undefined) process.env.PYTHON_BIN = saved;
  });

  it('creates a venv, reuses it, updates it when requirements change, and fails typed when pip fails', async () => {
    writeFileSync(requirements, '# nothing to install\n');
    const progress: string[] = [];
    const first = await ensurePythonEnv(
      { venvDir, requirementsFile: requirements, pythonBin: 'python3' },
      (l) => progress.push(l),
    );
    expect(first).toMatchObject({ venvDir, created: true, reused: false, python: venvPython(venvDir) });
    expect(existsSync(join(venvDir, VENV_MARKER))).toBe(true);
    expect(progress.some((l) => l.startsWith('creating venv'))).toBe(true);

    const run = await runCommand(first.python, ['-c', 'import sys; print(sys.prefix)']);
    expect(run.code).toBe(0);
    expect(realpathSync(run.stdout.trim())).toBe(realpathSync(venvDir));

    const second = await ensurePythonEnv({ venvDir, requirementsFile: requirements, pythonBin: 'python3' });
    expect(second).toMatchObject({ created: false, reused: true, python: first.python });
    expect(await resolvePythonBin({ venvDir, requirementsFile: requirements })).toBe(first.python);

    writeFileSync(requirements, 'arc-ttft-no-such-package-xyz==0.0.1\n');
    const failed = await ensurePythonEnv({
      venvDir,
      requirementsFile: requirements,
      pythonBin: 'python3',
    }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(SetupError);
    expect((failed as SetupError).reason).toBe('pip_failed');
    expect((failed as SetupError).output).toContain('arc-ttft-no-such-package-xyz');
    // The failed install left no marker, so the venv is not used until it is repaired.
    expect(await resolvePythonBin({ venvDir, requirementsFile: requirements })).toBe('python3');

    writeFileSync(requirements, '# nothing to install, again\n');
    const updated = await ensurePythonEnv({ venvDir, requirementsFile: requirements, pythonBin: 'python3' });
    expect(updated).toMatchObject({ created: false, reused: false, python: first.python });
    expect(await resolvePythonBin({ venvDir, requirementsFile: requirements })).toBe(first.python);

    // Rebuilt with the venv's own python as the base (PYTHON_BIN pointing at it, as the CLI suggests): the venv
    // is made by the interpreter it came from, not by its own, which is deleted first.
    const rebuilt = await ensurePythonEnv({
      venvDir,
      requirementsFile: requirements,
      pythonBin: first.python,
      force: true,
    });
    expect(rebuilt).toMatchObject({ created: true, python: first.python });
    expect((await runCommand(first.python, ['-c', 'print(1)'])).stdout.trim()).toBe('1');
  });

  it('prints the venv python from the CLI command', async () => {
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      out.push(String(chunk));
      return true;
    });
    try {
      await setupCommand().parseAsync(
        ['--venv', venvDir, '--requirements', requirements, '--python', 'python3', '-q'],
        {
          from: 'user',
        },
      );
    } finally {
      spy.mockRestore();
    }
    expect(out.join('')).toBe(`${venvPython(venvDir)}\n`);
  });

  it('uses PYTHON_BIN first, and python3 when no venv is set up', async () => {
    await withEnv({ PYTHON_BIN: '/opt/custom/python', ARC_TTFT_VENV: undefined }, async () => {
      expect(await resolvePythonBin()).toBe('/opt/custom/python');
    });
    await withEnv(
      { PYTHON_BIN: undefined, ARC_TTFT_VENV: undefined, XDG_CACHE_HOME: join(TMP, 'cache') },
      async () => {
        expect(venvCacheDir()).toBe(join(TMP, 'cache', 'arc-ttft'));
        expect(await resolvePythonBin({ requirementsFile: requirements })).toBe('python3');
      },
    );
  });

  it('refuses bad setups with typed errors', async () => {
    await expect(
      ensurePythonEnv({ venvDir, requirementsFile: requirements, pythonBin: join(TMP, 'missing-python') }),
    ).rejects.toMatchObject({ reason: 'python_missing' });
    await expect(
      ensurePythonEnv({ venvDir, requirementsFile: join(TMP, 'missing.txt'), pythonBin: 'python3' }),
    ).rejects.toBeInstanceOf(FileError);

    const noVenv = fakePython('python-no-venv', '3.11.7', { venv: true, ensurepip: false });
    await expect(
      ensurePythonEnv({
        venvDir: join(TMP, 'other-venv'),
        requirementsFile: requirements,
        pythonBin: noVenv,
      }),
    ).rejects.toMatchObject({ reason: 'venv_unavailable' });

    const notAVenv = join(TMP, 'precious');
    mkdirSync(notAVenv);
    writeFileSync(join(notAVenv, 'thesis.tex'), 'do not delete');
    const fine = fakePython('python-fine', '3.11.7', { venv: true, ensurepip: true });
    await expect(
      ensurePythonEnv({ venvDir: notAVenv, requirementsFile: requirements, pythonBin: fine }),
    ).rejects.toMatchObject({ reason: 'unsafe_dir' });
    expect(existsSync(join(notAVenv, 'thesis.tex'))).toBe(true);

    await expect(ensurePythonEnv({ force: 'yes' } as never)).rejects.toMatchObject({
      name: 'ValidationError',
    });
  });
});
