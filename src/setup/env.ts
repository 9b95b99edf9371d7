/**
 * The Python environment of the engine: a virtual environment with the pinned requirements
 * installed, created once and reused by later runs (and later installs of the same version).
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { makeDirs } from '../data/fs.js';
import { parseOptions } from '../data/validate.js';
import { FileError, SetupError } from '../errors.js';
import { requirementsFile as defaultRequirementsFile, pythonPackageDir } from '../paths.js';
import { type PythonInfo, probePython, runCommand } from './python.js';

/** Name of the marker file written into a venv once its requirements are installed. */
export const VENV_MARKER = '.arc-ttft-env.json';

/** What the marker file records. */
interface VenvMarker {
  readonly schema: 1;
  readonly requirementsHash: string;
  readonly pythonVersion: string;
  readonly basePython: string;
  readonly requirementsFile: string;
  readonly installedAt: string;
  /** Optional parts installed on top, with the hash of each one's requirements file. */
  readonly extras?: Readonly<Record<string, string>>;
}

/** Optional parts of the Python environment, each a `python/requirements-<name>.txt` installed on top. */
export const PythonExtraSchema = z.enum(['ray']);
/** An optional part of the Python environment: `'ray'` for {@link createRayPool}. */
export type PythonExtra = z.infer<typeof PythonExtraSchema>;

/** The pinned requirements file of an optional part (`python/requirements-<name>.txt`). */
export function extraRequirementsFile(extra: PythonExtra): string {
  return join(pythonPackageDir(), `requirements-${extra}.txt`);
}

/** Options of {@link ensurePythonEnv}. */
export const PythonEnvOptionsSchema = z.object({
  /**
   * Where the venv lives.
   * @default env `ARC_TTFT_VENV`, else `${XDG_CACHE_HOME:-~/.cache}/arc-ttft/venv-<hash>` where the hash
   * covers the requirements file's contents and the base Python's version.
   */
  venvDir: z.string().min(1).optional(),
  /**
   * Base interpreter that creates the venv.
   * @default env `PYTHON_BIN`, else `python3`
   */
  pythonBin: z.string().min(1).optional(),
  /**
   * Pinned requirements to install.
   * @default the package's `python/requirements.txt`
   */
  requirementsFile: z.string().min(1).optional(),
  /**
   * Delete and recreate the venv even when it is up to date.
   * @default false
   */
  force: z.boolean().default(false),
  /**
   * Optional parts to install as well (`'ray'`: python/requirements-ray.txt). They go into the same
   * venv (its folder name still hashes only the core requirements); parts installed earlier are kept.
   * @default []
   */
  extras: z.array(PythonExtraSchema).default([]),
});
/** Options of {@link ensurePythonEnv}. */
export type PythonEnvOptions = z.input<typeof PythonEnvOptionsSchema>;

/** Options of {@link resolvePythonBin}. */
export const ResolvePythonOptionsSchema = PythonEnvOptionsSchema.omit({ force: true, extras: true });
/** Options of {@link resolvePythonBin}. */
export type ResolvePythonOptions = z.input<typeof ResolvePythonOptionsSchema>;

/** A ready Python environment. */
export interface PythonEnv {
  /** The venv's interpreter: pass it as `pythonBin` (or `PYTHON_BIN`) to the bridge. */
  readonly python: string;
  /** The venv's folder. */
  readonly venvDir: string;
  /** The venv was created by this call. */
  readonly created: boolean;
  /** The venv was already up to date; nothing was installed. (Both false: an existing venv was updated.) */
  readonly reused: boolean;
  /** Version of the venv's Python, e.g. `3.11.7`. */
  readonly pythonVersion: string;
  /** Hash of the requirements file's contents and the Python version, as recorded in the marker. */
  readonly requirementsHash: string;
  /** Optional parts installed in it (see `extras`). */
  readonly extras: readonly PythonExtra[];
}

/** The venv's interpreter path (`bin/python`, or `Scripts\python.exe` on Windows). */
export function venvPython(venvDir: string): string {
  return process.platform === 'win32'
    ? join(venvDir, 'Scripts', 'python.exe')
    : join(venvDir, 'bin', 'python');
}

/** Hash of a requirements file's contents plus a Python version (16 hex digits). */
export function requirementsHash(requirements: string, pythonVersion: string): string {
  return createHash('sha256')
    .update(`${requirements.replace(/\r\n/g, '\n')}\0python ${pythonVersion}`)
    .digest('hex')
    .slice(0, 16);
}

/** The per-user cache folder for venvs: `${XDG_CACHE_HOME:-~/.cache}/arc-ttft`. */
export function venvCacheDir(): string {
  const base =
    process.env.XDG_CACHE_HOME && process.env.XDG_CACHE_HOME !== ''
      ? process.env.XDG_CACHE_HOME
      : process.platform === 'win32' && process.env.LOCALAPPDATA
        ? process.env.LOCALAPPDATA
        : join(homedir(), '.cache');
  return join(base, 'arc-ttft');
}

function readMarker(venvDir: string): VenvMarker | undefined {
  try {
    const raw = JSON.parse(readFileSync(join(venvDir, VENV_MARKER), 'utf8')) as Partial<VenvMarker>;
    return raw.schema === 1 && typeof raw.requirementsHash === 'string' ? (raw as VenvMarker) : undefined;
  } catch {
    return undefined;
  }
}

async function readRequirements(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    throw new FileError({ path: file, message: 'cannot read the requirements file', cause });
  }
}

interface Resolved {
  readonly base: PythonInfo;
  readonly requirementsFile: string;
  readonly requirements: string;
  readonly hash: string;
  readonly venvDir: string;
}

async function resolveEnv(o: z.output<typeof ResolvePythonOptionsSchema>): Promise<Resolved> {
  const reqFile = resolve(o.requirementsFile ?? defaultRequirementsFile());
  const requirements = await readRequirements(reqFile);
  const base = await probePython(o.pythonBin ?? process.env.PYTHON_BIN ?? 'python3');
  const hash = requirementsHash(requirements, base.version);
  const venvDir = resolve(o.venvDir ?? process.env.ARC_TTFT_VENV ?? join(venvCacheDir(), `venv-${hash}`));
  return { base, requirementsFile: reqFile, requirements, hash, venvDir };
}

/** Version the venv's python reports, or undefined when it does not run. */
async function venvVersion(python: string): Promise<string | undefined> {
  if (!existsSync(python)) return undefined;
  const run = await runCommand(python, ['-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])']);
  return run.code === 0 ? run.stdout.trim() : undefined;
}

/** Refuses to delete a folder that is neither empty, nor a venv, nor ours. */
function assertDeletable(dir: string): void {
  if (!existsSync(dir)) return;
  const entries = readdirSync(dir);
  if (entries.length === 0 || entries.includes(VENV_MARKER) || entries.includes('pyvenv.cfg')) return;
  throw new SetupError({
    reason: 'unsafe_dir',
    message: `${dir} exists and is not a Python venv; refusing to replace it (choose another --venv)`,
  });
}

/**
 * Makes sure a venv with the pinned requirements exists and returns its interpreter. Reuses the venv
 * when its marker matches the requirements' hash; installs into it when only the requirements changed;
 * (re)creates it when it is missing, broken, made by another Python version, or `force` is set. pip
 * runs offline-safe (`--retries 0`, no version check); its output goes line by line to `onProgress`.
 * Optional parts (`extras: ['ray']`) are installed on top of the same venv and recorded in its marker,
 * so asking again reuses them. Do not run two setups on the same folder at once.
 *
 * @throws {SetupError} when the base Python is missing, older than 3.10, lacks `venv`/`ensurepip`, or
 *   `venv`/`pip` fail (`output` has the tail of their output).
 * @throws {FileError} when the requirements file cannot be read.
 */
export async function ensurePythonEnv(
  options: PythonEnvOptions = {},
  onProgress?: (line: string) => void,
): Promise<PythonEnv> {
  const o = parseOptions(PythonEnvOptionsSchema, options, 'ensurePythonEnv');
  const r = await resolveEnv(o);
  const python = venvPython(r.venvDir);
  const progress = (line: string): void => onProgress?.(line);

  const marker = readMarker(r.venvDir);
  const version = o.force ? undefined : await venvVersion(python);
  // Extras asked for now, and those installed before (kept, and kept current).
  const extraHashes = new Map<PythonExtra, string>();
  for (const extra of new Set([...o.extras, ...extrasOf(marker)])) {
    const text = await readRequirements(extraRequirementsFile(extra));
    extraHashes.set(extra, requirementsHash(text, r.base.version));
  }
  const staleExtras = [...extraHashes].filter(([extra, hash]) => marker?.extras?.[extra] !== hash);
  if (version !== undefined && version === r.base.version && marker?.requirementsHash === r.hash) {
    if (staleExtras.length === 0) {
      progress(`reusing ${r.venvDir} (requirements unchanged)`);
      return {
        python,
        venvDir: r.venvDir,
        created: false,
        reused: true,
        pythonVersion: version,
        requirementsHash: r.hash,
        extras: extrasOf(marker),
      };
    }
    // Only the extras are missing or changed: install them on top (the core stays usable if pip fails).
    for (const [extra] of staleExtras) await pipInstall(python, extraRequirementsFile(extra), progress);
    const extras = Object.fromEntries(extraHashes);
    await writeMarker(r.venvDir, { ...marker, extras, installedAt: new Date().toISOString() });
    progress(`ready: ${python}`);
    return {
      python,
      venvDir: r.venvDir,
      created: false,
      reused: false,
      pythonVersion: version,
      requirementsHash: r.hash,
      extras: Object.keys(extras) as PythonExtra[],
    };
  }

  const create = version === undefined || version !== r.base.version;
  if (create) {
    if (!r.base.hasVenv || !r.base.hasEnsurepip) {
      throw new SetupError({
        reason: 'venv_unavailable',
        message:
          `${r.base.command} (Python ${r.base.version}) lacks the ${r.base.hasVenv ? 'ensurepip' : 'venv'} module, ` +
          'so it cannot create a venv with pip (on Debian/Ubuntu: apt-get install python3-venv)',
      });
    }
    assertDeletable(r.venvDir);
    await rm(r.venvDir, { recursive: true, force: true });
    await makeDirs(dirname(r.venvDir));
    progress(`creating venv ${r.venvDir} with ${r.base.baseExecutable} (Python ${r.base.version})`);
    const made = await runCommand(r.base.baseExecutable, ['-m', 'venv', r.venvDir], {}, progress);
    if (made.code !== 0 || !existsSync(python)) {
      throw new SetupError({
        reason: 'venv_failed',
        message: `"${r.base.command} -m venv ${r.venvDir}" failed (exit code ${made.code}):\n${made.tail}`,
        output: made.tail,
        cause: made.spawnError,
      });
    }
  } else {
    progress(`updating ${r.venvDir} (requirements changed)`);
    // A failed install must not leave a marker that says the venv is complete.
    await rm(join(r.venvDir, VENV_MARKER), { force: true });
  }

  await pipInstall(python, r.requirementsFile, progress);
  for (const [extra] of extraHashes) await pipInstall(python, extraRequirementsFile(extra), progress);

  const extras = Object.fromEntries(extraHashes);
  await writeMarker(r.venvDir, {
    schema: 1,
    requirementsHash: r.hash,
    pythonVersion: r.base.version,
    basePython: r.base.executable,
    requirementsFile: r.requirementsFile,
    installedAt: new Date().toISOString(),
    ...(extraHashes.size > 0 ? { extras } : {}),
  });
  progress(`ready: ${python}`);
  return {
    python,
    venvDir: r.venvDir,
    created: create,
    reused: false,
    pythonVersion: r.base.version,
    requirementsHash: r.hash,
    extras: Object.keys(extras) as PythonExtra[],
  };
}

function extrasOf(marker: VenvMarker | undefined): PythonExtra[] {
  return Object.keys(marker?.extras ?? {}).filter(
    (x): x is PythonExtra => PythonExtraSchema.safeParse(x).success,
  );
}

async function writeMarker(venvDir: string, marker: VenvMarker): Promise<void> {
  const markerFile = join(venvDir, VENV_MARKER);
  await writeFile(`${markerFile}.tmp`, `${JSON.stringify(marker, null, 2)}\n`);
  await rename(`${markerFile}.tmp`, markerFile);
}

/** `pip install -r file`, offline-safe; a failure is a {@link SetupError} with pip's output tail. */
async function pipInstall(python: string, file: string, progress: (line: string) => void): Promise<void> {
  progress(`installing ${file}`);
  const pip = await runCommand(
    python,
    ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--retries', '0', '-r', file],
    {
      env: { ...process.env, PIP_RETRIES: '0', PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_INPUT: '1' },
      tailLines: 30,
    },
    progress,
  );
  if (pip.code !== 0) {
    throw new SetupError({
      reason: 'pip_failed',
      message: `pip install -r ${file} failed (exit code ${pip.code}):\n${pip.tail}`,
      output: pip.tail,
      cause: pip.spawnError,
    });
  }
}

/**
 * The interpreter the bridge should run: env `PYTHON_BIN` when set; else the arc-ttft venv's python
 * when that venv exists and is complete (its marker is written); else `python3`. Never throws: when
 * the venv cannot be located (no requirements file, no base Python) it falls back to `python3`.
 */
export async function resolvePythonBin(options: ResolvePythonOptions = {}): Promise<string> {
  const o = parseOptions(ResolvePythonOptionsSchema, options, 'resolvePythonBin');
  const fromEnv = process.env.PYTHON_BIN;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  let venvDir = o.venvDir ?? process.env.ARC_TTFT_VENV;
  if (venvDir === undefined || venvDir === '') {
    try {
      venvDir = (await resolveEnv(o)).venvDir;
    } catch {
      return 'python3';
    }
  }
  const python = venvPython(resolve(venvDir));
  return readMarker(resolve(venvDir)) !== undefined && existsSync(python) ? python : 'python3';
}
