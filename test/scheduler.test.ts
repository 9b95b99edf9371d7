/**
 * The time budget's scheduler: what a finished task teaches it about the next one's settings. Compiling
 * (compiled training, paid once per process) is not what a training step costs.
 */
import { describe, expect, it } from 'vitest';
import type { TaskRecord } from '../src/ttft/records.js';
import { Scheduler } from '../src/ttft/run.js';

function record(trainSeconds: number, compileSeconds?: number): TaskRecord {
  return {
    type: 'task',
    taskId: 't',
    status: 'done',
    attempts: [],
    fallback: [],
    keptTrain: [0],
    droppedTrain: [],
    train: {
      steps: 10,
      losses: [],
      tokens: 0,
      samples: 1,
      seconds: trainSeconds,
      ...(compileSeconds !== undefined ? { compileSeconds } : {}),
    },
    predict: {
      tests: [{ testIndex: 0, candidates: [], failures: 0, views: 8 }],
      generatedTokens: 0,
      seconds: 1,
    },
    settings: { steps: 10, augmentations: 8 },
    seconds: trainSeconds + 1,
    finishedAt: '2026-11-27T00:00:00.000Z',
  };
}

const BASE = { steps: 300, augmentations: 8 };

describe('Scheduler', () => {
  it('sizes training from the seconds per step, without the seconds spent compiling', () => {
    // 100 s for 2 more tasks: ~45 s each. 10 steps took 31 s, 30 of them compiling: 0.1 s a step.
    const compiled = new Scheduler(100_000);
    compiled.observe(record(31, 30));
    expect(compiled.plan(2, 1, BASE).steps).toBe(300);
    // Counted as training, the same record would make a step cost 3.1 s.
    const plain = new Scheduler(100_000);
    plain.observe(record(31));
    expect(plain.plan(2, 1, BASE).steps).toBeLessThan(15);
  });

  it('learns nothing about steps from a task that only compiled, and calibrates on the next', () => {
    const s = new Scheduler(100_000);
    s.observe(record(30, 30));
    const first = s.plan(2, 1, BASE);
    expect(first.steps).toBe(300); // still uncalibrated: Python stops training at trainSeconds
    expect(first.trainSeconds).toBeCloseTo(25, 0); // half of a 50 s share
    s.observe(record(2));
    expect(s.plan(2, 1, BASE).steps).toBeLessThan(300); // 0.2 s a step now
  });

  it('halves the uncalibrated plan once per timeout (a group that timed out together is one), not after calibrating', () => {
    const s = new Scheduler(100_000);
    s.timedOut();
    expect(s.plan(2, 1, BASE)).toMatchObject({ steps: 150, augmentations: 4 });
    s.timedOut();
    expect(s.plan(2, 1, BASE)).toMatchObject({ steps: 75, augmentations: 2 });
    // A task that timed out, recorded, teaches nothing by itself: the run calls timedOut() once per group.
    s.observe({ ...record(2), status: 'timed_out' });
    expect(s.plan(2, 1, BASE)).toMatchObject({ steps: 75, augmentations: 2 });
    s.observe(record(2));
    s.timedOut(); // calibrated: the measurements size the plan now
    expect(s.plan(2, 1, BASE).augmentations).toBe(8);
  });
});
