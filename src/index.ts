/**
 * arc-ttft: single-task test-time fine-tuning (TTFT) of language models on ARC tasks.
 *
 * This is the package's only public entry. Everything is a named export; the data layer (schemas,
 * loading, prompts, augmentations, token budget, voting, scoring) is pure TypeScript, the engine runs
 * the model in one long-lived Python process behind a typed bridge.
 *
 * @packageDocumentation
 */

// Augmentations and training samples.
export {
  ALL_TRANSFORMS,
  type Augmentation,
  type AugmentationOptions,
  AugmentationOptionsSchema,
  AugmentationSchema,
  applyAugmentation,
  applyAugmentationGrid,
  applyColourMap,
  applyTransform,
  type ColourMap,
  ColourMapSchema,
  type ColourPermutation,
  ColourPermutationSchema,
  composeTransforms,
  IDENTITY_COLOUR_MAP,
  identityAugmentation,
  inverseTransform,
  invertAugmentationGrid,
  invertColourMap,
  type RandomColourMapOptions,
  RandomColourMapOptionsSchema,
  randomColourMap,
  type SampleAugmentationsOptions,
  SampleAugmentationsOptionsSchema,
  sampleAugmentations,
  TRANSFORM_NAMES,
  type Transform,
  TransformSchema,
  validateAugmentation,
  validateColourMap,
} from './augment.js';
// The Python side: environment setup and the bridge.
export {
  Bridge,
  type BridgeCallOptions,
  BridgeCallOptionsSchema,
  type BridgeExitCause,
  type BridgeExitEvent,
  type BridgeHooks,
  type BridgeOptions,
  BridgeOptionsSchema,
  type BridgeSession,
  createBridge,
} from './bridge/index.js';
export {
  type CountTokens,
  charCount,
  type DropStrategy,
  DropStrategySchema,
  type FitFailure,
  type FitOptions,
  FitOptionsSchema,
  type FitResult,
  type FitSuccess,
  fitTask,
} from './budget.js';
// Loading, writing, splitting and joining.
export {
  type JsonFile,
  parseJsonText,
  readJsonFile,
  readJsonFileWithText,
  taskFilePath,
  type WriteJsonOptions,
  WriteJsonOptionsSchema,
  writeJsonAtomic,
} from './data/fs.js';
export {
  type LoadError,
  type LoadFormat,
  type LoadObjectOptions,
  LoadObjectOptionsSchema,
  type LoadOptions,
  LoadOptionsSchema,
  type LoadResult,
  loadSolutions,
  loadSubmission,
  loadTaskSetFromObject,
  loadTasks,
  type MergeSolutionsOptions,
  MergeSolutionsOptionsSchema,
  mergeSolutions,
  type ParseSourceOptions,
  ParseSourceOptionsSchema,
  parseSolutions,
  parseSubmission,
} from './data/load.js';
export {
  checkSubmission,
  type FilledEntry,
  type JoinOptions,
  JoinOptionsSchema,
  type JoinResult,
  joinPredictions,
  type Predictions,
  readPredictionFolder,
  type SplitOptions,
  SplitOptionsSchema,
  splitTaskSet,
  type WriteSubmissionOptions,
  WriteSubmissionOptionsSchema,
  writeSubmission,
} from './data/split.js';
export {
  formatPath,
  parseWith,
  type ValidationContext,
  validateAttempts,
  validateGrid,
  validateTask,
  validateTaskId,
} from './data/validate.js';
// Errors: one hierarchy.
export {
  ArcTtftError,
  type ArcTtftErrorCode,
  BridgeError,
  type BridgeFailure,
  FileError,
  isArcTtftError,
  SetupError,
  type SetupFailure,
  TaskTooLongError,
  TimeoutError,
  ValidationError,
  type ValidationIssue,
} from './errors.js';
// Prompt formats, parsing and the token budget.
export {
  ARC24_FENCE,
  ARC24_HEADER_PREFIX,
  arc24Encoding,
  COMPACT_ALPHABET,
  COMPACT_MARKERS,
  compactEncoding,
  ENCODINGS,
  type GridEncoding,
  type GridFormatName,
  GridFormatNameSchema,
  getEncoding,
} from './format/encodings.js';
export { type ParseFailureReason, type ParseResult, parseGrid } from './format/parse.js';
export {
  answerTextFor,
  buildInferencePrompt,
  buildTrainingText,
  CHATML_INSTRUCTION,
  CHATML_SYSTEM_PROMPT,
  largestAnswerShape,
  maxAnswerChars,
  type PromptFormat,
  type PromptOptions,
  PromptOptionsSchema,
  type PromptStyle,
  PromptStyleSchema,
  type TrainingText,
} from './format/prompt.js';
export { cloneGrid, filledGrid, gridFromKey, gridKey, gridShape, gridsEqual } from './grid.js';
export { packageRoot, pythonPackageDir, requirementsFile, sampleDataDir } from './paths.js';
export { createRng, deriveSeed, hashString, type Rng } from './rng.js';
export {
  buildInferenceInputs,
  buildTrainingSamples,
  type InferenceInput,
  type InferenceInputOptions,
  InferenceInputOptionsSchema,
  type TrainingSample,
  type TrainingSampleOptions,
  TrainingSampleOptionsSchema,
} from './samples.js';
// Schemas and types.
export {
  type Attempts,
  AttemptsSchema,
  CellSchema,
  type Example,
  ExampleSchema,
  type Grid,
  GridSchema,
  MAX_GRID_SIZE,
  type Solutions,
  SolutionsSchema,
  type Submission,
  SubmissionSchema,
  type Task,
  TaskIdSchema,
  TaskSchema,
  type TaskSet,
  TaskSetSchema,
  type TestExample,
  TestExampleSchema,
} from './schemas.js';
export {
  type FormatScoreTableOptions,
  FormatScoreTableOptionsSchema,
  formatScoreTable,
  METRIC_DESCRIPTIONS,
  METRIC_NAMES,
  type Metrics,
  type ScoreOptions,
  ScoreOptionsSchema,
  type ScoreReport,
  scorePredictions,
  scoreSubmission,
  type TaskPredictions,
  type TaskScore,
  type TestPredictions,
  type UnansweredTest,
} from './score.js';
export {
  ensurePythonEnv,
  MIN_PYTHON,
  type PythonEnv,
  type PythonEnvOptions,
  PythonEnvOptionsSchema,
  type PythonInfo,
  probePython,
  type ResolvePythonOptions,
  ResolvePythonOptionsSchema,
  resolvePythonBin,
  venvCacheDir,
  venvPython,
} from './setup/index.js';
export { loadQwenTokenizer, QWEN_TOKENIZER_PACKAGE, type QwenTokenizer } from './tokenizers/qwen.js';
// The engine: fine-tune and predict one task with the model held across tasks.
export {
  createEngine,
  Engine,
  type EngineHooks,
  type EngineOptions,
  EngineOptionsSchema,
  type FineTuneOptions,
  FineTuneOptionsSchema,
  type FineTuneResult,
  fineTuneTask,
  type GenerationFailure,
  type LoraOptions,
  LoraOptionsSchema,
  type ModelInfo,
  makeTinyModel,
  type PredictOptions,
  PredictOptionsSchema,
  type PredictResult,
  predictTask,
  type ResolvedEngineOptions,
  resolveModelPath,
  TaskTextOptionsSchema,
  type TestPrediction,
  type TestPredictionStatus,
  type TinyModelOptions,
  TinyModelOptionsSchema,
} from './ttft/index.js';

export { VERSION } from './version.js';
// Voting and scoring.
export {
  type Candidate,
  type RankedCandidate,
  type VoteOptions,
  VoteOptionsSchema,
  type VoteResult,
  voteAttempts,
} from './vote.js';
