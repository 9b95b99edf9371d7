/**
 * The synthetic task the engine examples train on (a helper module, not an example: `examples/lib/` is not run).
 */
import type { Grid, Task } from '../../src/index.js';

/** A task whose answer is one fixed grid, different per task: a LoRA learns it, the random model cannot guess it. */
export function constantTask(k: number): Task {
  const answer: Grid = [
    [k, k + 1],
    [k + 2, k],
  ];
  const input = (i: number): Grid => [
    [(i + k) % 10, (i * 3) % 10, 5],
    [(i * 7) % 10, k, (i + 4) % 10],
  ];
  return {
    train: [0, 1, 2].map((i) => ({ input: input(i), output: answer })),
    test: [{ input: input(9), output: answer }],
  };
}
