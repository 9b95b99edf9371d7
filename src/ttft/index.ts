/**
 * Single-task test-time fine-tuning: the engine, fine-tuning one task, predicting one task.
 *
 * @module
 */
export {
  createEngine,
  Engine,
  type EngineHooks,
  type EngineOptions,
  EngineOptionsSchema,
  type LoraOptions,
  LoraOptionsSchema,
  type ModelInfo,
  makeTinyModel,
  type ResolvedEngineOptions,
  resolveModelPath,
  type TinyModelOptions,
  TinyModelOptionsSchema,
} from './engine.js';
export {
  type FineTuneOptions,
  FineTuneOptionsSchema,
  type FineTuneResult,
  fineTuneTask,
  TaskTextOptionsSchema,
} from './fine-tune.js';
export {
  type GenerationFailure,
  type PredictOptions,
  PredictOptionsSchema,
  type PredictResult,
  predictTask,
  type TestPrediction,
  type TestPredictionStatus,
} from './predict.js';
