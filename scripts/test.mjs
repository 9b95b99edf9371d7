// `npm test`: everything a fresh clone needs, then every test. Installs npm deps and the Python venv
// when missing, lints, type-checks, builds, runs vitest and pytest, and ends with one summary line.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { build, ensureNodeModules, ensurePython, ROOT, readJson, run } from './lib.mjs';

const started = Date.now();
ensureNodeModules();
run('npx', ['biome', 'check', '.']);
run('npx', ['tsc', '--noEmit']);
build();
// With the optional Ray packages, so the Ray tests (test/ray.test.ts, python/tests/test_ray_pool.py) run.
const python = await ensurePython({ extras: ['ray'] });
// The report test drives Debian's headless Chromium; install it when missing (root on Debian). Without
// it the browser checks are skipped with a message, the rest still runs.
run('node', ['scripts/ensure-chromium.mjs'], { allowFail: true });

const reports = join(ROOT, '.cache/test-reports');
rmSync(reports, { recursive: true, force: true });
mkdirSync(reports, { recursive: true });
const env = { PYTHON_BIN: python, ARC_TTFT_PYTHON: python };

const vitestStatus = run(
  'npx',
  [
    'vitest',
    'run',
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${join(reports, 'vitest.json')}`,
  ],
  { env, allowFail: true },
);
const pytestStatus = run(
  python,
  ['-m', 'pytest', 'python/tests', '-q', `--junitxml=${join(reports, 'pytest.xml')}`],
  { env, allowFail: true },
);

let passed = 0;
let failed = 0;
let skipped = 0;
try {
  const v = readJson(join(reports, 'vitest.json'));
  passed += v.numPassedTests;
  failed += v.numFailedTests;
  skipped += v.numPendingTests + (v.numTodoTests ?? 0);
} catch {
  failed += 1; // no report: vitest itself failed to run
}
try {
  const { readFileSync } = await import('node:fs');
  const xml = readFileSync(join(reports, 'pytest.xml'), 'utf8');
  const attr = (name) => Number(new RegExp(`<testsuite[^>]* ${name}="(\\d+)"`).exec(xml)?.[1] ?? 0);
  const total = attr('tests');
  const bad = attr('failures') + attr('errors');
  const skip = attr('skipped');
  passed += total - bad - skip;
  failed += bad;
  skipped += skip;
} catch {
  failed += 1;
}
const minutes = ((Date.now() - started) / 60000).toFixed(1);
console.log(`\nvitest exit ${vitestStatus}, pytest exit ${pytestStatus}, ${minutes} min`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(vitestStatus === 0 && pytestStatus === 0 && failed === 0 ? 0 : 1);
