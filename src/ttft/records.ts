/**
 * What a run records per task: the journal lines (`results.jsonl`) that make a run resumable, and the
 * data the report is drawn from. Plain JSON, so a journal can be read by any tool.
 *
 * @module
 */

import { setEntry } from '../data/validate.js';
import type { Attempts, Grid } from '../schemas.js';
import type { TaskPredictions } from '../score.js';

/** How one task ended. */
export type TaskStatus =
  /** Fine-tuned (or not, in mode `none`) and predicted. */
  | 'done'
  /** Did not fit `maxSeqLen` even with one train pair; answered with a fallback. */
  | 'too_long'
  /** The engine raised or crashed on it; answered with a fallback. */
  | 'failed'
  /** Ran past its time limit; answered with a fallback. */
  | 'timed_out'
  /** The task could not be loaded: not run, answered with a fallback where its test inputs were readable. */
  | 'invalid';

/** Each status once (a record has every key, so the list cannot miss one): the journal check and the report's order. */
const STATUS_KEYS: Readonly<Record<TaskStatus, true>> = {
  done: true,
  too_long: true,
  failed: true,
  timed_out: true,
  invalid: true,
};
/** @internal Every {@link TaskStatus}, in the order reports list them. */
export const TASK_STATUSES = Object.keys(STATUS_KEYS) as [TaskStatus, ...TaskStatus[]];

/** Which model was used for a task's predictions. */
export type RunMode = 'single-task' | 'whole-set' | 'none';

/** An error as data (journal-safe). */
export interface ErrorRecord {
  /** Error class, e.g. `TimeoutError`, or the Python exception type. */
  readonly type: string;
  /** The error message (for a Python error, the exception's message). */
  readonly message: string;
  /** Python traceback, when the error came from Python. */
  readonly traceback?: string | undefined;
}

/** One distinct predicted grid of a test input, with its votes. */
export interface CandidateRecord {
  /** The grid, mapped back to the original (un-augmented) orientation and colours. */
  readonly grid: number[][];
  /** How many views produced this grid. */
  readonly votes: number;
  /** Mean per-token log-probability of the views that produced it; `null` when unknown. */
  readonly meanLogProb: number | null;
}

/** Predictions for one test input. */
export interface TestRecord {
  /** Index of the test input in `task.test`. */
  readonly testIndex: number;
  /** Distinct grids, best first. */
  readonly candidates: readonly CandidateRecord[];
  /** Views whose text did not parse. */
  readonly failures: number;
  /** Views generated. */
  readonly views: number;
}

/** One line of the journal: everything known about one finished task. */
export interface TaskRecord {
  /** Journal line kind (the journal also holds `run` and `whole_set` lines). */
  readonly type: 'task';
  /** The task's id. */
  readonly taskId: string;
  /** How the task ended. */
  readonly status: TaskStatus;
  /** One `{attempt_1, attempt_2}` per test input (a fallback grid where nothing was predicted). */
  readonly attempts: readonly Attempts[];
  /** Which attempts came from the fallback, by test index. */
  readonly fallback: readonly number[];
  /** Train pairs used, by original index. */
  readonly keptTrain: readonly number[];
  /** Train pairs dropped to fit `maxSeqLen`, by original index. */
  readonly droppedTrain: readonly number[];
  /** Training (absent in mode `none`, or when it did not run). */
  readonly train?:
    | {
        /** Optimizer steps run. */
        readonly steps: number;
        /** Loss of each step (`null` where it was not finite). */
        readonly losses: readonly (number | null)[];
        /** Tokens trained on (prompt and answer). */
        readonly tokens: number;
        /** Training samples built (after de-duplication and the cap). */
        readonly samples: number;
        /** Seconds in Python training. */
        readonly seconds: number;
        /** Of `seconds`, what compiling took (`train.compile`; absent when nothing compiled). */
        readonly compileSeconds?: number;
      }
    | undefined;
  /** Prediction details (absent when it did not run). */
  readonly predict?:
    | {
        /** One entry per test input, in order. */
        readonly tests: readonly TestRecord[];
        /** Tokens generated over all views. */
        readonly generatedTokens: number;
        /** Seconds in Python generating. */
        readonly seconds: number;
      }
    | undefined;
  /** Steps and views actually used (the time budget may lower them). */
  readonly settings: {
    /** Training steps run (0 when there was no training). */
    readonly steps: number;
    /** Augmented views per test input. */
    readonly augmentations: number;
  };
  /** Why the task did not finish as `done`. */
  readonly error?: ErrorRecord | undefined;
  /**
   * Wall-clock seconds spent on this task: its training or fitting, and its share of the prediction (in a
   * `tasksPerBatch` group, by generated tokens; the group's other trainings are theirs).
   */
  readonly seconds: number;
  /** ISO time the task finished. */
  readonly finishedAt: string;
}

/**
 * @internal Every prediction of every view (by votes; unparsable views as `null`) of finished task
 * records, for {@link scorePredictions}: arc24's metrics count them all.
 */
export function recordsToPredictions(records: Iterable<TaskRecord>): TaskPredictions {
  const out: Record<string, TaskPredictions[string]> = {};
  for (const r of records) {
    setEntry(
      out,
      r.taskId,
      r.attempts.map((a, i) => {
        const test = r.predict?.tests.find((t) => t.testIndex === i);
        const candidates: (Grid | null)[] = [];
        if (test !== undefined) {
          for (const c of test.candidates) for (let k = 0; k < c.votes; k++) candidates.push(c.grid);
          for (let k = 0; k < test.failures; k++) candidates.push(null);
        }
        return candidates.length > 0 ? { attempts: a, candidates } : { attempts: a };
      }),
    );
  }
  return out;
}
