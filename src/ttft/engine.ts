/**
 * The engine: one long-lived Python process that holds the base model and tokenizer across tasks.
 * Each task resets the LoRA adapter in place instead of reloading the model (arc24's notebook paid
 * process start, imports, load and warm-up once per task).
 *
 * @module
 */
import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { Bridge, type BridgeCallOptions, type BridgeExitEvent, type BridgeSession } from '../bridge/index.js';
import { parseOptions } from '../data/validate.js';
import { ArcTtftError, BridgeError, FileError, ValidationError, type ValidationIssue } from '../errors.js';
import {
  ARC24_FENCE,
  ARC24_HEADER_PREFIX,
  arc24Encoding,
  COMPACT_ALPHABET,
  type GridFormatName,
  GridFormatNameSchema,
} from '../format/encodings.js';
import { buildTrainingText, type PromptOptions } from '../format/prompt.js';
import { packageRoot } from '../paths.js';
import { MAX_GRID_SIZE, SeedSchema, TimeoutMsSchema } from '../schemas.js';
import { venvCacheDir } from '../setup/env.js';

/** @internal Largest vocabulary still treated as a compact (one token per character) ARC vocabulary. */
export const SMALL_VOCAB = 512;

/** LoRA settings (PEFT's `LoraConfig`). */
export const LoraOptionsSchema = z.strictObject({
  /**
   * Rank.
   * @default 16
   */
  r: z.number().int().positive().default(16),
  /**
   * Scaling numerator (`alpha / r` scales the update).
   * @default 32
   */
  alpha: z.number().positive().default(32),
  /**
   * Dropout on the LoRA input, below 1 (1 drops every input: nothing would train).
   * @default 0
   */
  dropout: z
    .number()
    .min(0)
    .lt(1, { error: 'dropout must be below 1 (1 drops every input: nothing trains)' })
    .default(0),
  /**
   * Modules that get LoRA: `'all-linear'` (every linear projection but the output layer) or names.
   * @default 'all-linear'
   */
  targetModules: z.union([z.literal('all-linear'), z.array(z.string().min(1)).min(1)]).default('all-linear'),
  /**
   * Modules trained in full and reset per task as well, e.g. `['embed_tokens', 'lm_head']` (the
   * ARChitects trained the embeddings too; it helps small models a lot). Not with `dtype: 'float16'`: the
   * copies would train in float16, where AdamW's epsilon rounds to 0 and the weights turn NaN.
   * @default null
   */
  modulesToSave: z.array(z.string().min(1)).nullable().default(null),
});
/** LoRA settings. */
export type LoraOptions = z.input<typeof LoraOptionsSchema>;

/** Settings of the vLLM generation backend (`backend: 'vllm'`). */
export const VllmOptionsSchema = z.strictObject({
  /**
   * Share of the GPU's memory vLLM may take (its weights and KV cache); the rest stays for the PEFT
   * model that trains. Default: half the GPU, or 90 % of what the loaded training model left free when
   * that is less (vLLM refuses to start when its share is not free).
   */
  gpuMemoryUtilization: z.number().min(0.01).max(1).optional(),
  /**
   * vLLM's prefix caching (reuses the KV cache of a prompt prefix seen before); default: vLLM's own
   * setting (on). Off makes a repeated prompt take exactly the same kernels.
   */
  prefixCaching: z.boolean().optional(),
  /**
   * Skip CUDA graphs and compilation: a faster start, slower decoding.
   * @default false
   */
  enforceEager: z.boolean().default(false),
  /**
   * Adapters one batch may mix: raise it to the run's `tasksPerBatch` so a group's tasks decode together.
   * @default 1
   */
  maxLoras: z.number().int().min(1).max(64).default(1),
});
/** Settings of the vLLM generation backend. */
export type VllmOptions = z.input<typeof VllmOptionsSchema>;

/** Who generates the answers (training always runs on the PEFT model). */
export type GenerationBackend = 'transformers' | 'vllm';

/** The `attention` engine option: `'auto'` or an attention implementation transformers knows. */
export const AttentionSchema = z.enum([
  'auto',
  'sdpa',
  'eager',
  'flash_attention_2',
  'flash_attention_3',
  'flex_attention',
]);

/** Options of {@link createEngine}. */
export const EngineOptionsSchema = z.strictObject({
  /**
   * Base model: a local folder, a Hugging Face id (resolved by `from_pretrained`, from the local cache
   * when offline), or `'embedded'` (the small ARC model shipped in the package's `models/embedded`).
   * @default 'embedded'
   */
  model: z.string().min(1).default('embedded'),
  /**
   * Grid format of prompts: `'auto'` picks `compact` for a small character vocabulary (≤ 512 tokens)
   * and `arc24` otherwise.
   * @default 'auto'
   */
  format: z.union([z.literal('auto'), GridFormatNameSchema]).default('auto'),
  /**
   * Longest sequence (prompt + answer); `'auto'` = min(8192, the model's max positions).
   * @default 'auto'
   */
  maxSeqLen: z.union([z.literal('auto'), z.number().int().positive()]).default('auto'),
  /**
   * Weights dtype; `'auto'` is bfloat16 on a CUDA GPU of compute capability 8 or more (Ampere on), else float32
   * (a T4 or V100 only emulates bfloat16).
   * @default 'auto'
   */
  dtype: z.enum(['auto', 'float32', 'bfloat16', 'float16']).default('auto'),
  /**
   * `'auto'` (CUDA when present, else CPU), `'cpu'`, `'cuda'` or `'cuda:N'`.
   * @default 'auto'
   */
  device: z
    .string()
    .regex(/^(auto|cpu|cuda(:\d+)?)$/, { error: 'device must be auto, cpu, cuda or cuda:N' })
    .default('auto'),
  /**
   * Attention implementation: `'auto'` is transformers' choice (SDPA for the models here). Under
   * `'flash_attention_2'` / `'flash_attention_3'` (the flash-attn package, CUDA) or `'flex_attention'`
   * (CUDA for training), packed training rows are `maxSeqLen` long and each sample attends only to
   * itself at no cost for the rest of the row; `decode: 'static' | 'compiled'` needs `'sdpa'` or
   * `'eager'`. An implementation this machine or model cannot run fails `createEngine` (`pythonType`
   * `AttentionUnavailableError` or transformers' own).
   * @default 'auto'
   */
  attention: AttentionSchema.default('auto'),
  /**
   * LoRA settings (ignored when `adapterInit` is given: the adapter brings its own); each field
   * left out takes its own default.
   * @default {}
   */
  lora: LoraOptionsSchema.default(LoraOptionsSchema.parse({})),
  /**
   * A PEFT adapter folder every task starts from (arc24 found continuing a pretrained LoRA beats a
   * fresh one); default: a fresh seeded LoRA.
   */
  adapterInit: z.string().min(1).optional(),
  /**
   * Seed of the fresh adapter init.
   * @default 0
   */
  seed: SeedSchema.default(0),
  /**
   * Keep only the tokens ARC prompts use (the ARChitects' reduced vocabulary): the input embedding and
   * output layer shrink to them before LoRA is attached, so a 151k-token model trains and generates
   * faster. `true` always, `'auto'` only for a vocabulary of more than 512 tokens, `false` never. The kept
   * set covers every format and style ({@link vocabKeepSet}); a text needing another token fails with
   * Python's `VocabularyError`. Adapters saved this way only load on a model reduced the same way.
   * @default false
   */
  reduceVocab: z.union([z.boolean(), z.literal('auto')]).default(false),
  /**
   * Who generates the answers: `'transformers'` (the engine's own decoding loop on the PEFT model, CPU
   * or GPU) or `'vllm'` (vLLM on a CUDA GPU, each task's adapter handed over as a LoRA request; needs
   * `pip install vllm` in the engine's Python, see docs/engine.md, "Backends"). Training always runs
   * on the PEFT model. `'vllm'` excludes `reduceVocab` and `lora.modulesToSave`.
   * @default 'transformers'
   */
  backend: z.enum(['transformers', 'vllm']).default('transformers'),
  /**
   * Settings of the vLLM backend (unused by the transformers one); each field left out takes its
   * own default.
   * @default {}
   */
  vllm: VllmOptionsSchema.default(VllmOptionsSchema.parse({})),
  /** CPU threads for torch (sets `OMP_NUM_THREADS` and `MKL_NUM_THREADS`); default: torch's choice. */
  threads: z.number().int().positive().optional(),
  /** Python interpreter; default: env `PYTHON_BIN`, else the arc-ttft venv, else `python3`. */
  pythonBin: z.string().min(1).optional(),
  /**
   * Time limit of one engine call (a training run or a generation); 0 = none.
   * @default 1_800_000
   */
  callTimeoutMs: TimeoutMsSchema.default(1_800_000),
  /**
   * Time limit for Python to start (imports), not counting the model load.
   * @default 120_000
   */
  startTimeoutMs: TimeoutMsSchema.min(1).default(120_000),
  /**
   * Time limit for loading the model, at start and again after each restart (a crash or a timeout); 0 = none.
   * A load that hangs (a stuck network file system, a wedged GPU) then fails the start instead of waiting forever.
   * A Ray pool's workers wait for their model loads under `callTimeoutMs` instead, and a restarting worker must be
   * back within the pool's `restartTimeoutMs`.
   * @default 1_800_000
   */
  loadTimeoutMs: TimeoutMsSchema.default(1_800_000),
  /** Extra environment variables for Python. */
  env: z.record(z.string(), z.string()).optional(),
});
/** Options of {@link createEngine}. */
export type EngineOptions = z.input<typeof EngineOptionsSchema>;
/** Options of {@link createEngine}, with defaults filled in. */
export type ResolvedEngineOptions = z.output<typeof EngineOptionsSchema>;

/** What the loaded model is (reported by Python). */
export interface ModelInfo {
  /** Resolved model path or id. */
  readonly model: string;
  /** e.g. `qwen2`. */
  readonly modelType: string;
  /** Parameters of the base model (adapter excluded). */
  readonly nParams: number;
  /** Trainable (adapter) parameters. */
  readonly nTrainable: number;
  /** Tokenizer vocabulary size, added tokens included (the kept tokens when the vocabulary is reduced). */
  readonly vocabSize: number;
  /** The model's own vocabulary size, before any reduction. */
  readonly fullVocabSize: number;
  /** Whether the vocabulary was reduced (`reduceVocab`). */
  readonly reducedVocab: boolean;
  /** Who generates the answers (the `backend` option). */
  readonly backend: GenerationBackend;
  /** e.g. `cpu` or `cuda:0`. */
  readonly device: string;
  /** e.g. `float32`. */
  readonly dtype: string;
  /** The attention implementation in use, e.g. `sdpa`. */
  readonly attention: string;
  /** Longest sequence the model config allows; `null` when the config does not say. */
  readonly maxPositionEmbeddings: number | null;
  /** Seconds the load took. */
  readonly loadSeconds: number;
  /**
   * True when `'embedded'` was asked for but this package ships no pretrained model yet, so a tiny
   * random stand-in was used: the pipeline runs, the predictions are noise.
   */
  readonly embeddedStandIn: boolean;
}

/** Marks the training progress lines Python writes to stderr (python/arc_ttft/train.py). */
const PROGRESS_PREFIX = '@@arc-ttft-progress ';

/** One training progress report. */
export interface TrainProgress {
  /** Steps done. */
  readonly step: number;
  /** Steps in this training call. */
  readonly steps: number;
  /** Loss of the last step (finite: a step whose loss is not finite ends training with `TrainingDivergedError`). */
  readonly loss: number;
}

/** Callbacks of an engine (all optional). */
export interface EngineHooks {
  /** Each time the Python process goes away (crash, timeout, restart, close). */
  onExit?: (event: BridgeExitEvent) => void;
  /** Each line Python writes (stdout/stderr); without it output is kept only for error messages. */
  onLog?: (line: string, stream: 'stdout' | 'stderr') => void;
}

/** @internal What Python's `load_model` returns. */
export interface LoadModelResult {
  model_type: string;
  n_params: number;
  n_trainable: number;
  vocab_size: number;
  full_vocab_size: number;
  reduced_vocab: boolean;
  backend: GenerationBackend;
  device: string;
  dtype: string;
  attention: string | null;
  max_position_embeddings: number | null;
  seconds: number;
}

/**
 * @internal The `load_model` payload of an engine's options: one definition for the local engine and
 * the Ray workers, so both load the model the same way.
 */
export function loadModelPayload(o: ResolvedEngineOptions, model: string): Record<string, unknown> {
  return {
    model,
    dtype: o.dtype,
    device: o.device,
    attention: o.attention === 'auto' ? null : o.attention,
    lora: {
      r: o.lora.r,
      alpha: o.lora.alpha,
      dropout: o.lora.dropout,
      target_modules: o.lora.targetModules,
      modules_to_save: o.lora.modulesToSave,
    },
    adapter_init: o.adapterInit !== undefined ? resolve(o.adapterInit) : null,
    seed: o.seed,
    reduce_vocab: o.reduceVocab === false ? null : reduceVocabPayload(o.reduceVocab === 'auto'),
    backend: o.backend,
    vllm:
      o.backend === 'vllm'
        ? {
            gpu_memory_utilization: o.vllm.gpuMemoryUtilization ?? null,
            max_loras: o.vllm.maxLoras,
            enforce_eager: o.vllm.enforceEager,
            prefix_caching: o.vllm.prefixCaching ?? null,
            max_model_len: o.maxSeqLen === 'auto' ? null : o.maxSeqLen,
          }
        : null,
  };
}

/** @internal The format of `format: 'auto'`: compact for a small (character) vocabulary, else arc24. */
export function resolveFormat(o: ResolvedEngineOptions, model: ModelInfo): GridFormatName {
  if (o.format !== 'auto') return o.format;
  // The model's own vocabulary: a reduced one is small whatever the model is.
  return formatForVocab(model.fullVocabSize);
}

/** @internal The longest sequence of `maxSeqLen: 'auto'`: the model's positions, at most 8192. */
export function resolveMaxSeqLen(o: ResolvedEngineOptions, model: ModelInfo): number {
  if (o.maxSeqLen !== 'auto') return o.maxSeqLen;
  return maxSeqLenFor(model.maxPositionEmbeddings);
}

/** @internal The format of `format: 'auto'` for a vocabulary of `size` tokens (`inspect --model` too). */
export function formatForVocab(size: number): GridFormatName {
  return size <= SMALL_VOCAB ? 'compact' : 'arc24';
}

/** @internal `maxSeqLen: 'auto'` for a model of `positions` positions (unknown: 8192), at most 8192. */
export function maxSeqLenFor(positions: number | null | undefined): number {
  return Math.min(8192, positions ?? 8192);
}

/** @internal {@link ModelInfo} from Python's `load_model` result. */
export function modelInfoOf(r: LoadModelResult, model: string): ModelInfo {
  return {
    model,
    modelType: r.model_type,
    nParams: r.n_params,
    nTrainable: r.n_trainable,
    vocabSize: r.vocab_size,
    fullVocabSize: r.full_vocab_size,
    reducedVocab: r.reduced_vocab,
    backend: r.backend,
    device: r.device,
    dtype: r.dtype,
    attention: r.attention ?? 'unknown',
    maxPositionEmbeddings: r.max_position_embeddings,
    loadSeconds: r.seconds,
    embeddedStandIn: model === embeddedStandInDir(),
  };
}

/** What a reduced vocabulary must keep (the `reduce_vocab` payload of the engine's `load_model`). */
export interface VocabKeepSet {
  /** Texts whose tokens (and whose characters' tokens) are kept: the fixed text of every format. */
  readonly keepTexts: readonly string[];
  /**
   * Characters of the variable parts (cells, shapes, row and example numbers, compact markers): every
   * token made only of these is kept, so any grid of any size tokenises within the kept set.
   */
  readonly keepChars: string;
}

// Prompt variants the kept set covers: a reduced engine then serves every format and style per call.
const KEEP_VARIANTS: readonly PromptOptions[] = [
  { format: 'arc24', style: 'plain' },
  { format: 'arc24', style: 'chatml' },
  { format: 'compact', style: 'plain' },
];

/**
 * The texts and characters a reduced vocabulary keeps, derived from the prompt builders: prompts and
 * answers of a synthetic task (11 train pairs, so two-digit example numbers; a 30×30 grid, so row
 * numbers and shapes up to 30; every colour) in every format and style, plus the characters that vary
 * between tasks: the compact alphabet and the characters of an arc24 grid outside its fixed header and
 * fence (digits, `x`, `\n`).
 */
export function vocabKeepSet(): VocabKeepSet {
  const grid = (rows: number, cols: number): number[][] =>
    Array.from({ length: rows }, (_, r) => Array.from({ length: cols }, (_, c) => (r * cols + c) % 10));
  const shapes: [number, number][] = [
    [1, 1],
    [2, 3],
    [3, 2],
    [5, 5],
    [MAX_GRID_SIZE, MAX_GRID_SIZE],
  ];
  const pairs = Array.from({ length: 12 }, (_, i) => {
    const [rows, cols] = shapes[i % shapes.length]!;
    return { input: grid(rows, cols), output: grid(cols, rows) };
  });
  const target = pairs.pop()!;
  const keepTexts: string[] = [];
  for (const variant of KEEP_VARIANTS) {
    const t = buildTrainingText(pairs, target, variant);
    keepTexts.push(t.prompt, t.answer);
  }
  const fixed = new Set(ARC24_HEADER_PREFIX + ARC24_FENCE);
  const arc24Variable = [...arc24Encoding.encode(grid(MAX_GRID_SIZE, MAX_GRID_SIZE))].filter(
    (c) => !fixed.has(c),
  );
  const keepChars = [...new Set(COMPACT_ALPHABET + arc24Variable.join(''))].sort().join('');
  return { keepTexts, keepChars };
}

/** Folder of the pretrained model shipped in the package (when this version ships one). */
export function embeddedModelDir(): string {
  return join(packageRoot(), 'models', 'embedded');
}

/**
 * Where `'embedded'` points while the package ships no pretrained model: a tiny random model made on
 * first use in the per-user cache. It exercises the whole pipeline but predicts noise.
 */
export function embeddedStandInDir(): string {
  return join(venvCacheDir(), 'models', 'tiny-random-v1');
}

/**
 * Resolves `'embedded'` to the packaged model folder (or, while none is shipped, the stand-in's
 * folder), and local paths to absolute ones; a path that is not a model folder is a {@link FileError}.
 */
export function resolveModelPath(model: string): string {
  if (model === 'embedded') {
    const dir = embeddedModelDir();
    return existsSync(join(dir, 'config.json')) ? dir : embeddedStandInDir();
  }
  // Something that looks like a path must be a model folder; anything else may be a Hub id.
  const pathLike = isAbsolute(model) || model.startsWith('.') || model.startsWith('~') || existsSync(model);
  if (!pathLike) return model;
  // Absolute, so the Python side's working directory does not matter.
  return checkModelDir(resolve(model));
}

function reduceVocabPayload(auto: boolean): {
  keep_texts: readonly string[];
  keep_chars: string;
  skip_if_vocab_at_most: number;
} {
  const keep = vocabKeepSet();
  // 'auto': a character-level vocabulary is small already; reducing it would only cost compatibility.
  return {
    keep_texts: keep.keepTexts,
    keep_chars: keep.keepChars,
    skip_if_vocab_at_most: auto ? SMALL_VOCAB : 0,
  };
}

/** Option combinations the engine cannot serve (most of them the vLLM backend's), reported before Python starts. */
function checkBackendOptions(o: ResolvedEngineOptions): void {
  if (o.dtype === 'float16' && o.lora.modulesToSave !== null) {
    throw new ValidationError({
      source: 'createEngine options',
      issues: [
        {
          path: 'lora.modulesToSave',
          message:
            "with dtype 'float16' the module copies would train in float16 and turn NaN: use dtype 'bfloat16' or 'float32'",
        },
      ],
    });
  }
  if (o.backend !== 'vllm') return;
  const issues: ValidationIssue[] = [];
  if (o.reduceVocab !== false) {
    issues.push({
      path: 'reduceVocab',
      message:
        "backend 'vllm' loads the model folder as it is, so the vocabulary cannot be reduced: use false (or backend 'transformers')",
    });
  }
  if (o.lora.modulesToSave !== null) {
    issues.push({
      path: 'lora.modulesToSave',
      message: "backend 'vllm' serves LoRA weights only: use null (or backend 'transformers')",
    });
  }
  const targets = o.lora.targetModules;
  const head = Array.isArray(targets)
    ? targets.filter((t) =>
        ['embed_tokens', 'lm_head', 'wte', 'word_embeddings'].includes(t.split('.').at(-1)!),
      )
    : [];
  if (head.length > 0) {
    issues.push({
      path: 'lora.targetModules',
      message: `backend 'vllm' serves LoRA on linear layers only, not on ${head.join(', ')} (or use backend 'transformers')`,
    });
  }
  if (o.device === 'cpu' || /^cuda:[1-9]/.test(o.device)) {
    issues.push({
      path: 'device',
      message:
        "backend 'vllm' runs on the first visible CUDA GPU: use 'auto' or 'cuda' (choose the GPU with env CUDA_VISIBLE_DEVICES)",
    });
  }
  if (issues.length > 0) throw new ValidationError({ source: 'createEngine options', issues });
}

function checkModelDir(dir: string): string {
  if (!isAbsolute(dir)) return dir; // a Hub id
  if (!existsSync(dir)) throw new FileError({ path: dir, message: 'model folder not found' });
  if (!existsSync(join(dir, 'config.json'))) {
    throw new FileError({ path: dir, message: 'not a model folder (no config.json)' });
  }
  return dir;
}

/**
 * What {@link fineTuneTask} and {@link predictTask} need of an engine: a local {@link Engine}, or one
 * worker of a Ray pool (`RayPool.engines`), which runs the same calls in another process or machine.
 */
export type TaskEngine = Pick<
  Engine,
  'model' | 'format' | 'maxSeqLen' | 'countTokens' | 'call' | 'withTrainProgress'
>;

/**
 * A loaded base model in a Python process, ready for {@link fineTuneTask} and {@link predictTask}.
 * Calls run one at a time; after a crash or timeout the next call restarts Python and reloads the
 * model by itself. Close it with {@link Engine.close} (or `await using`).
 */
export class Engine {
  /** The options it was created with, defaults filled in. */
  readonly options: ResolvedEngineOptions;
  readonly #bridge: Bridge;
  #model: ModelInfo | undefined;
  #progressListener: ((progress: TrainProgress) => void) | undefined;

  /** Use {@link createEngine}: it also loads the model, so a bad model fails there. */
  constructor(options: EngineOptions = {}, hooks: EngineHooks = {}) {
    this.options = parseOptions(EngineOptionsSchema, options, 'createEngine');
    const o = this.options;
    checkBackendOptions(o);
    const env: Record<string, string> = { ...(o.env ?? {}) };
    if (o.threads !== undefined) {
      env.OMP_NUM_THREADS = String(o.threads);
      env.MKL_NUM_THREADS = String(o.threads);
    }
    this.#bridge = new Bridge(
      {
        ...(o.pythonBin !== undefined ? { pythonBin: o.pythonBin } : {}),
        callTimeoutMs: o.callTimeoutMs,
        startTimeoutMs: o.startTimeoutMs,
        env,
      },
      {
        // Every (re)start loads the model, so a crash loses only the call in flight.
        onStart: (session) => this.#load(session),
        ...(hooks.onExit ? { onExit: hooks.onExit } : {}),
        onLog: (line, stream) => {
          if (stream === 'stderr' && line.startsWith(PROGRESS_PREFIX)) {
            this.#onProgress(line.slice(PROGRESS_PREFIX.length));
          } else {
            hooks.onLog?.(line, stream);
          }
        },
      },
    );
  }

  async #load(session: BridgeSession): Promise<void> {
    const o = this.options;
    const model = resolveModelPath(o.model);
    const standIn = model === embeddedStandInDir();
    if (standIn && !existsSync(join(model, 'config.json'))) {
      await session.call('make_tiny_model', { path: model, seed: 0 }, { timeoutMs: o.loadTimeoutMs });
    }
    const r = await session.call<LoadModelResult>('load_model', loadModelPayload(o, model), {
      timeoutMs: o.loadTimeoutMs,
    });
    this.#model = modelInfoOf(r, model);
  }

  #onProgress(json: string): void {
    try {
      this.#progressListener?.(JSON.parse(json) as TrainProgress);
    } catch {
      // A progress line is informative only; a malformed one is ignored.
    }
  }

  /**
   * Runs `fn` with `listener` receiving the training progress Python reports meanwhile (calls are
   * one at a time, so the progress belongs to the call `fn` makes).
   */
  async withTrainProgress<T>(
    listener: ((progress: TrainProgress) => void) | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    this.#progressListener = listener;
    try {
      return await fn();
    } finally {
      this.#progressListener = undefined;
    }
  }

  /** Starts Python and loads the model (done by {@link createEngine}). */
  async start(): Promise<this> {
    await this.#bridge.start();
    return this;
  }

  /** The loaded model (after {@link Engine.start}). */
  get model(): ModelInfo {
    if (this.#model === undefined)
      throw new ArcTtftError('engine not started: create it with createEngine()');
    return this.#model;
  }

  /** The prompt format used when a task call does not name one. */
  get format(): GridFormatName {
    return resolveFormat(this.options, this.model);
  }

  /** The longest sequence used when a task call does not name one. */
  get maxSeqLen(): number {
    return resolveMaxSeqLen(this.options, this.model);
  }

  /** Python's process id (changes after a restart). */
  get pythonPid(): number | undefined {
    return this.#bridge.pythonPid;
  }

  /** How many times Python has started (1 + restarts). */
  get startCount(): number {
    return this.#bridge.startCount;
  }

  /** Token counts of `texts` under the model's tokenizer (raw text, no special tokens). */
  async countTokens(texts: string[], options?: BridgeCallOptions): Promise<number[]> {
    if (texts.length === 0) return [];
    const r = await this.#bridge.call<{ counts: number[] }>('count_tokens', { texts }, options);
    return r.counts;
  }

  /**
   * Calls an engine method directly (see python/arc_ttft/entry.py for the protocol). For what the
   * typed functions do not cover; payload fields are snake_case.
   */
  call<T = unknown>(method: string, payload?: unknown, options?: BridgeCallOptions): Promise<T> {
    return this.#bridge.call<T>(method, payload, options);
  }

  /** Kills Python and starts a fresh one with the model loaded again. */
  async restart(): Promise<void> {
    await this.#bridge.restart();
  }

  /** Stops Python; idempotent. The Node process can exit afterwards. */
  close(): Promise<void> {
    return this.#bridge.close();
  }

  /** Same as {@link Engine.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Starts the Python engine and loads the base model once. A missing model, a bad interpreter or a
 * missing Python package fails here with a typed error.
 *
 * @example
 * ```ts
 * const engine = await createEngine({ model: './my-model', lora: { r: 32 } });
 * try {
 *   const tuned = await fineTuneTask(engine, task, { taskId: '00576224', steps: 300 });
 *   const predicted = await predictTask(engine, task, { taskId: '00576224' });
 * } finally {
 *   await engine.close();
 * }
 * ```
 */
export async function createEngine(options: EngineOptions = {}, hooks: EngineHooks = {}): Promise<Engine> {
  const engine = new Engine(options, hooks);
  // Check the model before paying for a Python start.
  const model = resolveModelPath(engine.options.model);
  if (model !== embeddedStandInDir()) checkModelDir(model);
  try {
    return await engine.start();
  } catch (error) {
    await engine.close();
    // A failed model load is reported as itself, not as "could not start Python".
    if (
      error instanceof BridgeError &&
      error.reason === 'start_failed' &&
      error.cause instanceof ArcTtftError
    ) {
      throw error.cause;
    }
    throw error;
  }
}

/** Options of {@link makeTinyModel}. */
export const TinyModelOptionsSchema = z.strictObject({
  /**
   * Hidden size.
   * @default 64
   */
  hiddenSize: z.number().int().positive().default(64),
  /**
   * Transformer layers.
   * @default 2
   */
  numLayers: z.number().int().positive().default(2),
  /**
   * Attention heads.
   * @default 4
   */
  numHeads: z.number().int().positive().default(4),
  /**
   * Longest sequence the model accepts.
   * @default 8192
   */
  maxPositionEmbeddings: z.number().int().positive().default(8192),
  /**
   * Std of the random init (larger than HF's 0.02 so a LoRA can move the logits quickly).
   * @default 0.1
   */
  initializerRange: z.number().positive().default(0.1),
  /**
   * Seed of the random weights.
   * @default 0
   */
  seed: SeedSchema.default(0),
  /** Python interpreter; default as for {@link createEngine}. */
  pythonBin: z.string().min(1).optional(),
});
/** Options of {@link makeTinyModel}. */
export type TinyModelOptions = z.input<typeof TinyModelOptionsSchema>;

/**
 * Writes a tiny Qwen2-architecture model with random weights and a character-level ARC tokenizer
 * (one token per printable ASCII character and newline) to `path`, as a normal Hugging Face folder.
 * For tests, CPU experiments and benchmarks of the machinery, not for accuracy.
 */
export async function makeTinyModel(
  path: string,
  options?: TinyModelOptions,
): Promise<{
  /** Absolute path of the written model folder. */
  path: string;
  /** Parameters of the written model. */
  nParams: number;
}> {
  const o = parseOptions(TinyModelOptionsSchema, options, 'makeTinyModel');
  const bridge = new Bridge(o.pythonBin !== undefined ? { pythonBin: o.pythonBin } : {});
  try {
    const r = await bridge.call<{ path: string; n_params: number }>('make_tiny_model', {
      path: resolve(path),
      hidden_size: o.hiddenSize,
      num_layers: o.numLayers,
      num_heads: o.numHeads,
      max_position_embeddings: o.maxPositionEmbeddings,
      initializer_range: o.initializerRange,
      seed: o.seed,
    });
    return { path: r.path, nParams: r.n_params };
  } finally {
    await bridge.close();
  }
}
