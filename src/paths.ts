/**
 * Where arc-ttft's own files live on disk (the Python package, its requirements, the sample data),
 * found from this module's location so it works from `src/` (vitest, tsx) and from `dist/` (ESM and
 * CJS builds) alike.
 *
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileError } from './errors.js';

const PACKAGE_NAME = 'arc-ttft';
let cachedRoot: string | undefined;

/** True when `dir/package.json` exists and names arc-ttft. */
function isPackageRoot(dir: string): boolean {
  const file = join(dir, 'package.json');
  if (!existsSync(file)) return false;
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown }).name === PACKAGE_NAME;
  } catch {
    return false;
  }
}

/**
 * The folder holding arc-ttft's `package.json`: walks up from this module's own folder (so from
 * `src/` or from `dist/` and its chunks). Cached after the first call.
 *
 * @throws {FileError} when no `package.json` named `arc-ttft` sits above this module.
 */
export function packageRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  // tsup's `shims: true` provides import.meta.url in the CJS build too.
  const start = dirname(fileURLToPath(import.meta.url));
  let dir = start;
  for (;;) {
    if (isPackageRoot(dir)) {
      cachedRoot = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new FileError({ path: start, message: `no package.json named "${PACKAGE_NAME}" above this folder` });
}

/** The folder that contains the `arc_ttft` Python package (`<root>/python`); put it on `PYTHONPATH`. */
export function pythonPackageDir(): string {
  return join(packageRoot(), 'python');
}

/** The pinned Python requirements (`<root>/python/requirements.txt`). */
export function requirementsFile(): string {
  return join(pythonPackageDir(), 'requirements.txt');
}

/** The small sample data set shipped with the package (`<root>/data/sample`). */
export function sampleDataDir(): string {
  return join(packageRoot(), 'data', 'sample');
}
