// `npm run test:py`: the Python engine's pytest suite in the project venv (built and set up if needed).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { build, ensureNodeModules, ensurePython, ROOT, run } from './lib.mjs';

ensureNodeModules();
if (!existsSync(join(ROOT, 'dist/index.js'))) build();
const python = await ensurePython();
run(python, ['-m', 'pytest', 'python/tests', '-q', ...process.argv.slice(2)]);
