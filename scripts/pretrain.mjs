// `npm run pretrain`: builds the pretraining corpus (scripts/pretrain-data.ts) and pretrains the embedded model
// (python -m arc_ttft.pretrain) into models/embedded. See docs/pretraining.md.
//
//   npm run pretrain -- --overwrite                    # the documented CPU run (70 min on one core)
//   npm run pretrain -- --out /tmp/m --steps 200       # other flags go to the trainer (or to the corpus step)
//   npm run pretrain -- --skip-data                    # reuse .cache/pretrain/corpus.jsonl
//
// Wrapper flags: --corpus <file>, --out <dir>, --skip-data; --max-len goes to both steps (as --max-chars to the
// corpus), --seed too; --data, --exclude, --per-task, --curriculum, --curriculum-max-side, --format, --no-test
// go to the corpus step; everything else to the trainer.
//
// Python: PYTHON_BIN when set, else the project venv (`ensurePythonEnv` of the built library).
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build, ensureNodeModules, ensurePython, ROOT, run } from './lib.mjs';

/** Flags of the corpus step (scripts/pretrain-data.ts), with a value. `--seed` goes to both steps. */
const DATA_FLAGS = new Set([
  '--data',
  '--exclude',
  '--per-task',
  '--curriculum',
  '--curriculum-max-side',
  '--format',
]);

const args = process.argv.slice(2);
let corpus = join(ROOT, '.cache/pretrain/corpus.jsonl');
let out = join(ROOT, 'models/embedded');
let skipData = false;
let maxChars = '2048';
const dataArgs = [];
const trainArgs = [];
for (let i = 0; i < args.length; i++) {
  const flag = args[i];
  const value = args[i + 1];
  if (flag === '--skip-data') skipData = true;
  else if (flag === '--no-test') dataArgs.push(flag);
  else if (flag === '--corpus') corpus = args[++i] && resolve(args[i]);
  else if (flag === '--out') out = args[++i] && resolve(args[i]);
  else if (flag === '--max-len') maxChars = args[++i];
  else if (flag === '--seed') {
    dataArgs.push(flag, value);
    trainArgs.push(flag, value);
    i++;
  } else if (DATA_FLAGS.has(flag)) {
    dataArgs.push(flag, value);
    i++;
  } else trainArgs.push(flag);
}
if (corpus === undefined || out === undefined || maxChars === undefined) {
  console.error('error: --corpus, --out and --max-len need a value');
  process.exit(2);
}

ensureNodeModules();
if (!skipData) {
  run('npx', ['tsx', 'scripts/pretrain-data.ts', '--out', corpus, '--max-chars', maxChars, ...dataArgs]);
} else if (!existsSync(corpus)) {
  console.error(`error: --skip-data, but ${corpus} does not exist`);
  process.exit(1);
}

let python = process.env.PYTHON_BIN;
if (!python) {
  if (!existsSync(join(ROOT, 'dist/index.js'))) build();
  python = await ensurePython();
}
// The configuration of the shipped model (docs/pretraining.md): a 1,500-step schedule stopped by a
// 70-minute budget, one torch thread (two threads on a shared 2-core machine run far slower). Later flags win.
const defaults = ['--hidden', '128', '--layers', '4', '--heads', '4', '--batch', '16', '--lr', '2e-3'];
defaults.push('--steps', '1500', '--max-minutes', '70', '--threads', '1', '--eval-every', '250');
defaults.push('--seed', '0', '--curriculum-steps', '700', '--curriculum-share', '0.3');
const trainer = ['-m', 'arc_ttft.pretrain', '--data', corpus, '--out', out, '--max-len', maxChars];
run(python, [...trainer, ...defaults, ...trainArgs], { env: { PYTHONPATH: join(ROOT, 'python') } });
