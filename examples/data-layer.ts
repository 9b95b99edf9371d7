/**
 * The data layer end to end, without a model: load the sample tasks with their solutions, fit one task
 * into a token budget, build its prompt and training samples, augment and invert a grid, vote over
 * candidate predictions, join a submission and score it.
 *
 * Run: `npx tsx examples/data-layer.ts`
 *
 * @module
 */
import { join } from 'node:path';
import {
  answerTextFor,
  buildInferenceInputs,
  buildInferencePrompt,
  buildTrainingSamples,
  buildTrainingText,
  type Candidate,
  charCount,
  fitTask,
  formatScoreTable,
  type Grid,
  gridKey,
  gridsEqual,
  invertAugmentationGrid,
  joinPredictions,
  loadSolutions,
  loadTaskSetFromObject,
  loadTasks,
  parseGrid,
  sampleAugmentations,
  sampleDataDir,
  scoreSubmission,
  ValidationError,
  voteAttempts,
} from '../src/index.js';

const section = (title: string): void => console.log(`\n== ${title}`);

// 1. Load: a Kaggle challenges file, with the solutions merged in as test outputs.
const dir = sampleDataDir();
const { tasks, format } = await loadTasks(join(dir, 'challenges.json'), {
  solutions: join(dir, 'solutions.json'),
});
section('load');
console.log(`loaded ${Object.keys(tasks).length} tasks (${format}): ${Object.keys(tasks).join(' ')}`);

// Bad input is a typed error naming the task and the JSON path of the bad field.
try {
  loadTaskSetFromObject({
    broken: { train: [{ input: [[1, 2], [3]], output: [[1]] }], test: [{ input: [[1]] }] },
  });
} catch (error) {
  if (!(error instanceof ValidationError)) throw error;
  console.log(`bad task rejected: ${error.message}`);
}

// 2. Token budget: compact prompts cost one token per character, so `charCount` is the exact counter.
const id = '68b67ca3';
const task = tasks[id]!;
section(`fit task ${id} (${task.train.length} train pairs) into 256 tokens`);
const fit = await fitTask(task, charCount, {
  format: 'compact',
  maxSeqLen: 256,
  strategy: 'largest-first',
  taskId: id,
});
if (!fit.fits) throw fit.error;
console.log(
  `all pairs: ${fit.tokensAllPairs} tokens; kept pairs ${fit.kept.join(', ')} (dropped ${fit.dropped.join(', ')}): ` +
    `${fit.tokens} tokens; maxNewTokens ${fit.maxNewTokens}`,
);

// 3. Prompt: the kept train pairs, then the test input, ending where the answer grid starts.
const kept = fit.kept.map((i) => task.train[i]!);
const testInput = task.test[0]!.input;
const solution = task.test[0]!.output!;
section('compact prompt');
console.log(buildInferencePrompt(kept, testInput, 'compact'));
const answer = answerTextFor(solution, 'compact');
const parsed = parseGrid(answer, 'compact');
console.log(
  `answer ${JSON.stringify(answer)} parses back: ${parsed.ok && gridsEqual(parsed.grid, solution)}`,
);
console.log(`a cut-off answer: ${JSON.stringify(parseGrid('334\n70', 'compact'))}`);

// 4. Training samples: leave-one-out over the kept pairs, each under several augmentations.
section('training samples');
const samples = buildTrainingSamples(task, { keptTrain: fit.kept, augmentationsPerPair: 8, seed: 0 }, id);
const sample = samples[2]!;
const text = buildTrainingText(sample.train, sample.target, 'compact');
console.log(
  `${samples.length} samples; sample 2: target pair ${sample.targetIndex}, ${sample.augmentation.transform}, ` +
    `${text.text.length} characters, loss on [${text.answerSpan.join(', ')})`,
);

// 5. Augment and invert: predictions made on an augmented task are mapped back before voting.
section('augment, predict, invert, vote');
const augmentations = sampleAugmentations(1, 8, { trainIndices: fit.kept });
const views = buildInferenceInputs(task, 0, augmentations, { keptTrain: fit.kept, taskId: id });
const shown = views[3]!;
console.log(
  `view 3 (${shown.augmentation.transform}): test input ${gridKey(testInput)} -> ${gridKey(shown.input)}`,
);

// A stand-in for the model: right on most views, copying the input on two. Predictions are in the view's frame.
const candidates: Candidate[] = views.map((view, i) => {
  const predicted: Grid = i % 4 === 3 ? view.input : view.output!;
  return { grid: invertAugmentationGrid(predicted, view.augmentation), logProb: -0.1 * i };
});
const vote = voteAttempts(candidates);
for (const r of vote.ranked) console.log(`  ${r.votes} vote(s) for ${r.key}`);
console.log(`attempt 1 is the solution: ${gridsEqual(vote.attempt1!, solution)}`);

// 6. Join: one task predicted; every other test input is filled with its own input (identity fallback).
section('join and score');
const { submission, filled } = joinPredictions(
  tasks,
  { [id]: [{ attempt_1: vote.attempt1!, attempt_2: vote.attempt2! }] },
  { fallback: 'input' },
);
console.log(
  `submission: ${Object.keys(submission).length} tasks, ${filled.length} entries filled by the fallback`,
);

// 7. Score against the solutions file, as Kaggle does, plus arc24's diagnostic metrics.
const solutions = await loadSolutions(join(dir, 'solutions.json'));
const report = scoreSubmission(submission, solutions);
console.log(formatScoreTable(report));
