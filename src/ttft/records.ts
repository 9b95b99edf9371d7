/**
 * What a run records per task: the journal lines (`results.jsonl`) that make a run resumable, and the
 * data the report is drawn from. Plain JSON, so a journal can be read by any tool.
 *
 * @module
 */
import type { Attempts } from '../schemas.js';

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
  /** The task itself is invalid (not loaded); it has no answer. */
  | 'invalid';

/** Which model was used for a task's predictions. */
export type RunMode = 'single-task' | 'whole-set' | 'none';

/** An error as data (journal-safe). */
export interface ErrorRecord {
  /** Error class, e.g. `TimeoutError`, or the Python exception type. */
  readonly type: string;
  readonly message: string;
  /** Python traceback, when the error came from Python. */
  readonly traceback?: string | undefined;
}

/** One distinct predicted grid of a test input, with its votes. */
export interface CandidateRecord {
  readonly grid: number[][];
  readonly votes: number;
  readonly meanLogProb: number | null;
}

/** Predictions for one test input. */
export interface TestRecord {
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
  readonly type: 'task';
  readonly taskId: string;
  readonly status: TaskStatus;
  /** One `{attempt_1, attempt_2}` per test input (a fallback grid where nothing was predicted). */
  readonly attempts: readonly Attempts[];
  /** Which attempts came from the fallback, by test index. */
  readonly fallback: readonly number[];
  /** Train pairs used and dropped to fit `maxSeqLen`. */
  readonly keptTrain: readonly number[];
  readonly droppedTrain: readonly number[];
  /** Training (absent in mode `none`, or when it did not run). */
  readonly train?:
    | {
        readonly steps: number;
        readonly losses: readonly (number | null)[];
        readonly tokens: number;
        readonly samples: number;
        readonly seconds: number;
      }
    | undefined;
  /** Prediction details (absent when it did not run). */
  readonly predict?:
    | {
        readonly tests: readonly TestRecord[];
        readonly generatedTokens: number;
        readonly seconds: number;
      }
    | undefined;
  /** Steps and views actually used (the time budget may lower them). */
  readonly settings: { readonly steps: number; readonly augmentations: number };
  readonly error?: ErrorRecord | undefined;
  /** Wall-clock seconds for the whole task. */
  readonly seconds: number;
  /** ISO time the task finished. */
  readonly finishedAt: string;
}
