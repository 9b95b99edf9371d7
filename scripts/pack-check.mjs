// `npm run pack:check`: what `npm pack` would publish, checked. Prints the tarball's size and a summary of
// its contents by area, and fails (exit 1) when a required file is missing, a file is not on the allowlist
// (tests, benchmarks, caches, __pycache__, source maps, …), or a size limit is exceeded.
//
//   node scripts/pack-check.mjs                          dry run: nothing is written
//   node scripts/pack-check.mjs --pack-destination DIR   also writes the tarball into DIR
//   … --json                                             the summary as JSON on stdout (text on stderr)
//   … --dir DIR                                          pack DIR (a staged copy of the package) instead
//
// It packs dist/ as it is (with --ignore-scripts, so `prepack` does not rebuild): run `npm run build`
// first; a dist/ older than src/ is reported.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { ROOT } from './lib.mjs';

const kB = 1000;
const MB = 1000 * kB;

/**
 * Size limits. The tarball without the model holds the JS three times (ESM, CJS and the CLI, unminified),
 * two identical .d.ts files and the Python engine: 382 kB gzipped file by file at 0.1.0. The limit leaves
 * room to grow while still catching an accidental inclusion — the source maps alone would add 420 kB
 * packed, a stray data file or cache far more.
 */
export const LIMITS = {
  /** Packed size of everything but the embedded model. */
  codePacked: 600 * kB,
  /** Any single file outside the embedded model (unpacked): catches a stray data set or log. */
  file: 512 * kB,
  /**
   * The embedded model's files (unpacked; weights do not compress). 64 MB is a ~30M-parameter model in
   * bf16 — ample for a compact-vocabulary ARC model; anything larger belongs on a model hub, not in npm.
   */
  model: 64 * MB,
};

/** Every published path must match one of these; anything else fails the check. */
const ALLOWED = [
  /^(package\.json|README\.md|LICENSE|CHANGELOG\.md)$/,
  /^dist\/[\w.-]+\.(js|cjs|d\.ts|d\.cts)$/,
  /^python\/arc_ttft\/([\w-]+\/)*[\w-]+\.py$/,
  /^python\/(pyproject\.toml|requirements(-[a-z]+)?\.txt|README\.md)$/,
  /^data\/sample\/[\w.-]+\.(json|md)$/,
  /^models\/embedded\/.+$/,
];

/** Never published, even under an allowed folder (clearer messages than "not allowed"). */
const FORBIDDEN = [
  [/(^|\/)__pycache__\/|\.py[co]$/, 'Python bytecode cache'],
  [/(^|\/)\.pytest_cache\//, 'pytest cache'],
  [/(^|\/)\.(git|venv|cache)\//, 'VCS folder, venv or cache'],
  [/(^|\/)node_modules\//, 'node_modules'],
  [/\.map$/, 'source map (the shipped JS is unminified and readable; maps would double the tarball)'],
  [/^(test|bench|examples|src|scripts|docs|runs)\//, 'development-only folder'],
  [/^python\/tests\//, 'Python tests (development only)'],
];

/** Files that must be there for the package to work for ESM, CJS, TypeScript and the CLI. */
const REQUIRED = [
  'package.json',
  'README.md',
  'LICENSE',
  'CHANGELOG.md',
  'dist/index.js',
  'dist/index.cjs',
  'dist/index.d.ts',
  'dist/index.d.cts',
  'dist/cli.js',
  'dist/bridge-host.js',
  'python/arc_ttft/__init__.py',
  'python/arc_ttft/entry.py',
  'python/requirements.txt',
  'python/pyproject.toml',
  'data/sample/challenges.json',
  'data/sample/solutions.json',
];

const AREAS = [
  ['JS (ESM, CJS, CLI, bridge host)', (p) => /^dist\/.*\.(js|cjs)$/.test(p)],
  ['type declarations', (p) => /^dist\/.*\.d\.c?ts$/.test(p)],
  ['Python engine + requirements', (p) => p.startsWith('python/')],
  ['sample tasks', (p) => p.startsWith('data/sample/')],
  ['embedded model', (p) => p.startsWith('models/embedded/')],
  ['package.json, README, LICENSE, CHANGELOG', () => true],
];

/** Human-readable size. */
export function formatSize(bytes) {
  if (bytes >= MB) return `${(bytes / MB).toFixed(2)} MB`;
  if (bytes >= kB) return `${(bytes / kB).toFixed(1)} kB`;
  return `${bytes} B`;
}

/**
 * Checks one entry of `npm pack --json` output. `compressedSize(path)` gives a file's gzipped size (the
 * caller reads it; see {@link gzippedSize}). Returns `{ errors, areas, codePacked, modelBytes }`. Pure: the
 * caller runs npm.
 */
export function checkPack(pack, compressedSize) {
  const errors = [];
  const paths = pack.files.map((f) => f.path);
  for (const path of REQUIRED) if (!paths.includes(path)) errors.push(`missing: ${path}`);
  for (const { path, size } of pack.files) {
    const forbidden = FORBIDDEN.find(([re]) => re.test(path));
    if (forbidden) errors.push(`forbidden: ${path} (${forbidden[1]})`);
    else if (!ALLOWED.some((re) => re.test(path)))
      errors.push(`not on the allowlist: ${path} (add it to scripts/pack-check.mjs if it belongs)`);
    if (!path.startsWith('models/embedded/') && size > LIMITS.file)
      errors.push(`too large: ${path} is ${formatSize(size)} (limit ${formatSize(LIMITS.file)} per file)`);
  }
  const areas = AREAS.map(([name]) => ({ name, files: 0, bytes: 0 }));
  for (const { path, size } of pack.files) {
    const area = areas[AREAS.findIndex(([, match]) => match(path))];
    area.files += 1;
    area.bytes += size;
  }
  const modelBytes = areas.find((a) => a.name === 'embedded model').bytes;
  // npm reports only the whole tarball's packed size, and the model's weights compress too (by ~10 %), so
  // the rest is measured file by file: gzip per file is a slight overestimate of its share of the tarball.
  const codePacked = pack.files
    .filter(({ path }) => !path.startsWith('models/embedded/'))
    .reduce((sum, { path }) => sum + compressedSize(path), 0);
  if (codePacked > LIMITS.codePacked)
    errors.push(
      `tarball too large: ${formatSize(codePacked)} packed without the model (limit ${formatSize(LIMITS.codePacked)})`,
    );
  if (modelBytes > LIMITS.model)
    errors.push(`embedded model too large: ${formatSize(modelBytes)} (limit ${formatSize(LIMITS.model)})`);
  return { errors, areas, codePacked, modelBytes };
}

/** The gzipped size of `dir`/`path` (level 9). */
export function gzippedSize(dir, path) {
  return gzipSync(readFileSync(join(dir, path)), { level: 9 }).length;
}

/** Newest modification time (ms) of the files under `dir`. */
function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    newest = Math.max(newest, statSync(join(entry.parentPath ?? entry.path, entry.name)).mtimeMs);
  }
  return newest;
}

/** True when `dir`/dist/index.js is missing or older than a file under `dir`/src/. */
export function distIsStale(dir = ROOT) {
  try {
    return statSync(join(dir, 'dist/index.js')).mtimeMs < newestMtime(join(dir, 'src'));
  } catch {
    return true;
  }
}

function main(argv) {
  const json = argv.includes('--json');
  const value = (flag) => {
    const i = argv.indexOf(flag);
    if (i < 0) return undefined;
    if (argv[i + 1] === undefined || argv[i + 1].startsWith('--')) {
      console.error('usage: node scripts/pack-check.mjs [--pack-destination <dir>] [--dir <dir>] [--json]');
      process.exit(2);
    }
    return argv[i + 1];
  };
  const dest = value('--pack-destination');
  const dir = resolve(value('--dir') ?? ROOT);
  const say = json ? (line) => console.error(line) : (line) => console.log(line);

  const args = ['pack', '--json', '--ignore-scripts'];
  args.push(...(dest === undefined ? ['--dry-run'] : ['--pack-destination', resolve(dest)]));
  const npm = spawnSync('npm', args, { cwd: dir, encoding: 'utf8', maxBuffer: 64 * MB });
  if (npm.status !== 0) {
    console.error(`npm ${args.join(' ')} failed (exit ${npm.status ?? npm.signal}):\n${npm.stderr}`);
    process.exit(1);
  }
  const pack = JSON.parse(npm.stdout)[0];
  const { errors, areas, codePacked, modelBytes } = checkPack(pack, (path) => gzippedSize(dir, path));
  const stale = distIsStale(dir);

  say(
    `${pack.id}: ${pack.entryCount} files, ${formatSize(pack.size)} packed, ${formatSize(pack.unpackedSize)} unpacked`,
  );
  say(`  without the model: ${formatSize(codePacked)} packed (limit ${formatSize(LIMITS.codePacked)})`);
  for (const area of areas) {
    const what = area.files === 0 ? '—' : `${area.files} files, ${formatSize(area.bytes)}`;
    say(`  ${area.name.padEnd(42)} ${what}`);
  }
  if (modelBytes === 0)
    say('  (no embedded model yet: `--model embedded` makes a tiny random stand-in on first use)');
  const tarball = dest === undefined ? undefined : join(resolve(dest), pack.filename);
  if (tarball !== undefined) say(`tarball: ${tarball}`);
  if (stale) say('warning: dist/ is older than src/: run `npm run build` before packing');
  for (const error of errors) say(`error: ${error}`);
  if (json) {
    const summary = {
      id: pack.id,
      tarball,
      packedBytes: pack.size,
      unpackedBytes: pack.unpackedSize,
      codePackedBytes: codePacked,
      modelBytes,
      limits: LIMITS,
      files: pack.files.map((f) => f.path),
      areas,
      distStale: stale,
      errors,
    };
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  }
  say(errors.length === 0 ? 'pack check: ok' : `pack check: ${errors.length} problem(s)`);
  process.exit(errors.length === 0 ? 0 : 1);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2));
}
