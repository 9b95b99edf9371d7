/**
 * The `backend` engine option: `'transformers'` (the default) and `'vllm'` (optional, CUDA). Without
 * vLLM installed, choosing it fails in `createEngine` with a message that says how to install it, and
 * leaves no Python process behind. Needs the project venv (npm test sets ARC_TTFT_PYTHON).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BridgeExitEvent } from '../src/bridge/index.js';
import { BridgeError, ValidationError } from '../src/errors.js';
import {
  createEngine,
  Engine,
  EngineOptionsSchema,
  loadModelPayload,
  makeTinyModel,
} from '../src/ttft/engine.js';

const PYTHON = process.env.ARC_TTFT_PYTHON;
const py = PYTHON !== undefined ? { pythonBin: PYTHON } : {};
/** Whether the engine's Python can import vLLM (then the "missing" case cannot be shown here). */
const HAS_VLLM =
  spawnSync(PYTHON ?? 'python3', ['-c', 'import vllm'], { stdio: 'ignore', timeout: 120_000 }).status === 0;

let dir: string;
let tiny: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'arc-ttft-backend-'));
  tiny = (await makeTinyModel(join(dir, 'tiny'), { seed: 0, ...py })).path;
}, 180_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The rejection of `promise` (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('backend option', () => {
  it("defaults to 'transformers' with the vLLM settings at their defaults", () => {
    const o = EngineOptionsSchema.parse({});
    expect(o.backend).toBe('transformers');
    expect(o.vllm).toEqual({ enforceEager: false, maxLoras: 1 });
  });

  it('hands the vLLM settings to Python in snake_case, maxLoras included', () => {
    const o = EngineOptionsSchema.parse({ backend: 'vllm', vllm: { maxLoras: 4, enforceEager: true } });
    expect(loadModelPayload(o, 'model').vllm).toEqual({
      gpu_memory_utilization: null, // Python's default: half the GPU, less when less is free
      enforce_eager: true,
      max_model_len: null,
      max_loras: 4,
      prefix_caching: null,
    });
    const set = EngineOptionsSchema.parse({
      backend: 'vllm',
      vllm: { gpuMemoryUtilization: 0.7, prefixCaching: false },
    });
    expect(loadModelPayload(set, 'model').vllm).toMatchObject({
      gpu_memory_utilization: 0.7,
      prefix_caching: false,
    });
    expect(EngineOptionsSchema.safeParse({ vllm: { maxLoras: 0 } }).success).toBe(false);
  });

  it('rejects combinations vLLM cannot serve before Python starts, naming each option', async () => {
    const error = await rejection(
      createEngine({
        model: tiny,
        backend: 'vllm',
        reduceVocab: 'auto',
        lora: { modulesToSave: ['lm_head'], targetModules: ['q_proj', 'model.embed_tokens'] },
        device: 'cpu',
        ...py,
      }),
    );
    expect(error).toBeInstanceOf(ValidationError);
    const v = error as ValidationError;
    expect(v.issues.map((i) => i.path)).toEqual([
      'reduceVocab',
      'lora.modulesToSave',
      'lora.targetModules',
      'device',
    ]);
    expect(v.issues[2]!.message).toContain('not on model.embed_tokens');
    expect(v.message).toContain("backend 'vllm'");
    expect(v.message).toContain('createEngine options');
  });

  it('rejects an unknown backend and bad vLLM settings', async () => {
    const unknown = await rejection(createEngine({ model: tiny, backend: 'tgi' as 'vllm', ...py }));
    expect(unknown).toBeInstanceOf(ValidationError);
    expect((unknown as ValidationError).path).toBe('backend');
    const bad = await rejection(createEngine({ model: tiny, vllm: { gpuMemoryUtilization: 1.5 }, ...py }));
    expect((bad as ValidationError).path).toBe('vllm.gpuMemoryUtilization');
  });

  it.skipIf(HAS_VLLM)(
    "'vllm' without vLLM installed fails in createEngine with the install command, leaving no process",
    async () => {
      const exits: BridgeExitEvent[] = [];
      const error = await rejection(
        createEngine({ model: tiny, backend: 'vllm', ...py }, { onExit: (event) => exits.push(event) }),
      );
      expect(error).toBeInstanceOf(BridgeError);
      const b = error as BridgeError;
      expect(b.reason).toBe('exception');
      expect(b.pythonType).toBe('BackendUnavailableError');
      expect(b.message).toMatch(/-m pip install vllm/);
      expect(b.message).toContain('not installed');
      expect(b.message).toContain("backend 'transformers'");
      if (PYTHON !== undefined) expect(b.pythonMessage).toContain(`${PYTHON} -m pip install vllm`);
      // The Python that failed to load is gone, and so is its host.
      expect(exits.length).toBeGreaterThan(0);
      for (const event of exits) {
        if (event.pythonPid !== undefined) expect(isAlive(event.pythonPid)).toBe(false);
        if (event.pid !== undefined) expect(isAlive(event.pid)).toBe(false);
      }
    },
    120_000,
  );

  it("'transformers' given explicitly is the default engine: same options, generates", async () => {
    const implicit = new Engine({ model: tiny, ...py });
    await implicit.close(); // never started: only its resolved options are compared
    const engine = await createEngine({ model: tiny, backend: 'transformers', threads: 1, ...py });
    try {
      expect(engine.options).toEqual({ ...implicit.options, threads: 1 });
      expect(engine.model.backend).toBe('transformers');
      const r = await engine.call<{ outputs: { text: string; n_tokens: number }[]; tokens: number }>(
        'generate',
        { prompts: ['I\n1\nO\n', 'I\n22\nO\n'], max_new_tokens: 4 },
      );
      expect(r.outputs).toHaveLength(2);
      expect(r.tokens).toBe(r.outputs.reduce((n, o) => n + o.n_tokens, 0));
      const status = await engine.call<{ backend: string }>('status');
      expect(status.backend).toBe('transformers');
    } finally {
      await engine.close();
    }
    expect(engine.pythonPid).toBeUndefined();
  }, 180_000);
});
