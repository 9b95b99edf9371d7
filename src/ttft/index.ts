/**
 * Single-task test-time fine-tuning: the engine, fine-tuning one task, predicting one task (or
 * several in one batch), the run.
 *
 * @module
 */
export {
  AdapterSlotSchema,
  type KeepAdapterOptions,
  KeepAdapterOptionsSchema,
  type KeepAdapterResult,
  keepAdapter,
  MAX_ADAPTER_SLOTS,
  type PredictTasksItem,
  PredictTasksItemSchema,
  type PredictTasksOptions,
  PredictTasksOptionsSchema,
  type PredictTasksResult,
  predictTasks,
} from './batch.js';
export {
  AttentionSchema,
  createEngine,
  Engine,
  type EngineHooks,
  type EngineOptions,
  EngineOptionsSchema,
  type GenerationBackend,
  type LoraOptions,
  LoraOptionsSchema,
  type ModelInfo,
  makeTinyModel,
  type ResolvedEngineOptions,
  resolveModelPath,
  type TaskEngine,
  type TinyModelOptions,
  TinyModelOptionsSchema,
  type TrainProgress,
  type VllmOptions,
  VllmOptionsSchema,
  type VocabKeepSet,
  vocabKeepSet,
} from './engine.js';
export {
  type FineTuneHooks,
  type FineTuneOptions,
  FineTuneOptionsSchema,
  type FineTuneResult,
  fineTuneTask,
  TaskTextOptionsSchema,
  type TrainResult,
  type TrainSettings,
  trainSamples,
} from './fine-tune.js';
export {
  createRayPool,
  PoolEngine,
  type RayOptions,
  RayOptionsSchema,
  RayPool,
  type RayPoolHooks,
  type RayPoolInfo,
  type ResolvedRayOptions,
  type WorkerEvent,
} from './pool.js';
export {
  type DecodeMode,
  DecodeModeSchema,
  type GenerationFailure,
  type PredictOptions,
  PredictOptionsSchema,
  type PredictResult,
  predictTask,
  type TestPrediction,
  type TestPredictionStatus,
} from './predict.js';
export type {
  CandidateRecord,
  ErrorRecord,
  RunMode,
  TaskRecord,
  TaskStatus,
  TestRecord,
} from './records.js';
export {
  type RunContext,
  type RunEvent,
  type RunFiles,
  type RunOptions,
  RunOptionsSchema,
  RunPredictOptionsSchema,
  type RunResult,
  RunTrainOptionsSchema,
  runSingleTaskTTFT,
} from './run.js';
