// Regenerates data/sample/{challenges,solutions}.json (Kaggle layout) from six small ARC-AGI-1 evaluation
// tasks. Run once from the repo root: `node scripts/make-sample.mjs`. Plain Node, no dependencies.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './lib.mjs';

/** The sample tasks; data/sample/README.md says why each was chosen. */
const IDS = ['0c786b71', '34b99a2b', '4cd1b7b2', '5783df64', '68b67ca3', 'fc754716'];
const SOURCE = join(ROOT, '../shared/arc-data/arc-agi-1/evaluation');
const OUT = join(ROOT, 'data/sample');

const challenges = [];
const solutions = [];
for (const id of IDS) {
  const task = JSON.parse(readFileSync(join(SOURCE, `${id}.json`), 'utf8'));
  const grids = [...task.train, ...task.test].flatMap((p) => [p.input, p.output]);
  const side = Math.max(...grids.flatMap((g) => [g.length, g[0].length]));
  if (side > 10 || task.test.length !== 1 || task.train.length < 3 || task.train.length > 4) {
    throw new Error(`${id} does not fit the sample rules (grids ≤ 10×10, 3–4 train pairs, 1 test input)`);
  }
  const train = task.train.map((p) => ({ input: p.input, output: p.output }));
  const test = task.test.map((p) => ({ input: p.input }));
  challenges.push(`${JSON.stringify(id)}: ${JSON.stringify({ train, test })}`);
  solutions.push(`${JSON.stringify(id)}: ${JSON.stringify(task.test.map((p) => p.output))}`);
}
// One task per line: small diffs, still the exact Kaggle layout.
writeFileSync(join(OUT, 'challenges.json'), `{\n${challenges.join(',\n')}\n}\n`);
writeFileSync(join(OUT, 'solutions.json'), `{\n${solutions.join(',\n')}\n}\n`);
console.log(`wrote ${IDS.length} tasks to ${OUT}`);
