// `npm run quickstart`: from a fresh clone, install everything (npm deps, the Python venv with the
// pinned requirements), build, and run single-task TTFT on the bundled sample tasks.
import { join } from 'node:path';
import { build, ensureNodeModules, ensurePython, ROOT, run } from './lib.mjs';

ensureNodeModules();
build();
const python = await ensurePython();
const out = join(ROOT, 'runs/quickstart');
// --no-resume: the demo always shows a whole run. --lr 1e-3: the embedded model is tiny, and LoRA on it
// needs a larger step than the 1e-4 default meant for 0.5B+ models (the accuracy study uses 1e-3 too).
// Extra arguments go to `arc-ttft run` (later flags win).
run(
  process.execPath,
  [join(ROOT, 'dist/cli.js'), 'run', '--out', out, '--no-resume', '--lr', '1e-3', ...process.argv.slice(2)],
  {
    env: { PYTHON_BIN: python },
  },
);
console.log(
  `\nOpen ${join(out, 'report.html')} in a browser to see every task, its attempts and the losses.`,
);
