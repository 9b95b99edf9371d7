/**
 * Per-task overhead of the engine against the naive way (a fresh Python process per task), on CPU with
 * the tiny random model (`makeTinyModel`), both measured in the same run. See bench/README.md.
 *
 * Engine overhead of one task = the wall time of every engine round trip that the real `fineTuneTask`
 * (1 optimizer step) and `predictTask` make for it (count_tokens for the token budget, reset_adapter,
 * train, generate), minus the compute seconds Python reports for `train` and `generate`. What is left
 * is the adapter reset, the bridge hops (Node → host → pythonia → Python and back) and the JSON
 * encoding, transfer and decoding of the real payloads.
 * Naive cost of one task = spawn to exit of `python bench/naive_task.py` (start, import torch /
 * transformers / peft, load the model, attach LoRA, one training step on the same samples).
 *
 * Run: `npx tsx bench/overhead.ts [--tasks 12] [--naive 3] [--threads 1] [--pings 20] [--data PATH]
 *       [--python BIN] [--json] [--out FILE] [--save-payloads FILE]`: a table on stdout (progress on
 * stderr), or with `--json` one JSON object; `--out` also writes that JSON to a file.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import type { BridgeCallOptions } from '../src/bridge/index.js';
import { formatTable } from '../src/cli/table.js';
import {
  Engine,
  fineTuneTask,
  loadTasks,
  makeTinyModel,
  predictTask,
  type Task,
  TaskTooLongError,
} from '../src/index.js';
import { resolvePythonBin } from '../src/setup/env.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ARC1_EVALUATION = resolve(ROOT, '../shared/arc-data/arc-agi-1/evaluation');
const SAMPLE = join(ROOT, 'data/sample/challenges.json');
const NAIVE_SCRIPT = join(ROOT, 'bench/naive_task.py');
/** New tokens per generated sequence: enough for a real round trip, small enough for a 2-core CPU. */
const GENERATE_CAP = 16;

const { values: args } = parseArgs({
  options: {
    tasks: { type: 'string', default: '12' },
    naive: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1' },
    pings: { type: 'string', default: '20' },
    data: { type: 'string' },
    python: { type: 'string' },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
    'save-payloads': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  process.stdout.write(
    'usage: npx tsx bench/overhead.ts [--tasks N] [--naive M] [--threads T] [--pings P] [--data PATH]\n' +
      '                                 [--python BIN] [--json] [--out FILE] [--save-payloads FILE]\n',
  );
  process.exit(0);
}

function positiveInt(name: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`error: --${name} must be a positive integer, got ${value}\n`);
    process.exit(2);
  }
  return n;
}
const N_TASKS = positiveInt('tasks', args.tasks);
const N_NAIVE = Math.min(positiveInt('naive', args.naive), N_TASKS);
const THREADS = positiveInt('threads', args.threads);
const N_PINGS = positiveInt('pings', args.pings);
const DATA = resolve(args.data ?? (existsSync(ARC1_EVALUATION) ? ARC1_EVALUATION : SAMPLE));
/** A path as printed: relative to the repository, or to the folder above it (where `shared/` sits). */
const shown = (path: string): string =>
  relative(ROOT, path).startsWith('..') ? relative(resolve(ROOT, '..'), path) : relative(ROOT, path);

/** One engine round trip as seen from Node. */
interface CallRecord {
  readonly method: string;
  /** Wall time of the round trip. */
  readonly ms: number;
  /** Compute seconds Python reports for it (`train` and `generate` only). */
  readonly computeSeconds: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly payload: unknown;
}

/** The real engine, with every round trip timed (fineTuneTask/predictTask call these two methods). */
class RecordingEngine extends Engine {
  records: CallRecord[] = [];

  override async call<T = unknown>(
    method: string,
    payload?: unknown,
    options?: BridgeCallOptions,
  ): Promise<T> {
    let sent = payload;
    if (method === 'generate' && typeof payload === 'object' && payload !== null) {
      const p = payload as { max_new_tokens: number };
      sent = { ...p, max_new_tokens: Math.min(p.max_new_tokens, GENERATE_CAP) };
    }
    const started = performance.now();
    const result = await super.call<T>(method, sent, options);
    const ms = performance.now() - started;
    const seconds = (result as { seconds?: unknown }).seconds;
    this.records.push({
      method,
      ms,
      computeSeconds:
        (method === 'train' || method === 'generate') && typeof seconds === 'number' ? seconds : 0,
      bytesSent: Buffer.byteLength(JSON.stringify(sent ?? {})),
      bytesReceived: Buffer.byteLength(JSON.stringify(result)),
      payload: sent,
    });
    return result;
  }

  override async countTokens(texts: string[], options?: BridgeCallOptions): Promise<number[]> {
    const started = performance.now();
    const counts = await super.countTokens(texts, options);
    this.records.push({
      method: 'count_tokens',
      ms: performance.now() - started,
      computeSeconds: 0,
      bytesSent: Buffer.byteLength(JSON.stringify({ texts })),
      bytesReceived: Buffer.byteLength(JSON.stringify({ counts })),
      payload: { texts },
    });
    return counts;
  }
}

interface EngineTask {
  readonly taskId: string;
  /** Round trips minus Python's train/generate compute. */
  readonly overheadMs: number;
  readonly resetMs: number;
  readonly countTokensCalls: number;
  readonly countTokensMs: number;
  readonly trainRoundTripMs: number;
  readonly trainComputeMs: number;
  readonly generateRoundTripMs: number;
  readonly generateComputeMs: number;
  readonly trainPayloadBytes: number;
  readonly generatePayloadBytes: number;
  readonly samples: number;
  readonly sequences: number;
  /** Node-side work of fineTuneTask + predictTask outside the round trips (sample building, parsing, voting). */
  readonly nodePrepMs: number;
}

interface NaiveRun {
  readonly taskId: string;
  /** Spawn to exit, as seen from Node. */
  readonly seconds: number;
  readonly importsSeconds: number;
  readonly loadSeconds: number;
  readonly attachSeconds: number;
  readonly trainSeconds: number;
  /** Process time outside the script's own phases: interpreter start, site packages, exit. */
  readonly startExitSeconds: number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/** Runs the naive baseline once: a fresh Python process that imports, loads, attaches LoRA, trains a step. */
function runNaive(
  python: string,
  model: string,
  samplesFile: string,
  maxSeqLen: number,
  taskId: string,
): Promise<NaiveRun> {
  return new Promise((resolveRun, reject) => {
    const started = performance.now();
    const child = spawn(
      python,
      [NAIVE_SCRIPT, model, '--samples', samplesFile, '--device', 'cpu', '--max-seq-len', String(maxSeqLen)],
      {
        env: { ...process.env, OMP_NUM_THREADS: String(THREADS), MKL_NUM_THREADS: String(THREADS) },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += String(d);
    });
    child.stderr.on('data', (d) => {
      err += String(d);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = (performance.now() - started) / 1000;
      if (code !== 0) {
        reject(new Error(`naive_task.py exited with code ${code}:\n${err.slice(-2000)}`));
        return;
      }
      const r = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as Record<string, number>;
      resolveRun({
        taskId,
        seconds,
        importsSeconds: r.imports_s ?? Number.NaN,
        loadSeconds: r.load_s ?? Number.NaN,
        attachSeconds: r.attach_s ?? Number.NaN,
        trainSeconds: r.train_s ?? Number.NaN,
        startExitSeconds: seconds - (r.in_process_s ?? Number.NaN),
      });
    });
  });
}

const fmt = (x: number, digits = 1): string => x.toFixed(digits);

async function main(): Promise<void> {
  const python = args.python ?? (await resolvePythonBin());
  const loaded = await loadTasks(DATA);
  const ids = Object.keys(loaded.tasks).sort();
  const dir = mkdtempSync(join(tmpdir(), 'arc-ttft-bench-'));
  const model = join(dir, 'tiny');
  const log = (line: string): void => {
    if (!args.json) process.stderr.write(`${line}\n`);
  };
  const engine = new RecordingEngine({ model, threads: THREADS, pythonBin: python });
  try {
    log(`making the tiny model in ${model}`);
    const tiny = await makeTinyModel(model, { pythonBin: python });
    const startedAt = performance.now();
    await engine.start();
    const engineStartSeconds = (performance.now() - startedAt) / 1000;
    log(`engine started in ${fmt(engineStartSeconds, 2)} s (Python pid ${engine.pythonPid})`);

    // Bare round trips: the bridge hop with an empty payload.
    const pingMs: number[] = [];
    let versions: Record<string, unknown> = {};
    for (let i = 0; i < N_PINGS; i++) {
      const t = performance.now();
      versions = await engine.call<Record<string, unknown>>('ping');
      pingMs.push(performance.now() - t);
    }

    const engineTasks: EngineTask[] = [];
    const naiveRuns: NaiveRun[] = [];
    const saved: { task_id: string; calls: { method: string; payload: unknown }[] }[] = [];
    for (const taskId of ids) {
      if (engineTasks.length >= N_TASKS) break;
      const task = loaded.tasks[taskId] as Task;
      engine.records = [];
      let tuned: Awaited<ReturnType<typeof fineTuneTask>>;
      try {
        tuned = await fineTuneTask(engine, task, { taskId, steps: 1 });
      } catch (error) {
        if (error instanceof TaskTooLongError) {
          log(`skipping ${taskId}: ${error.message}`);
          continue;
        }
        throw error;
      }
      const predicted = await predictTask(engine, task, { taskId, keptTrain: tuned.keptTrain });
      const rec = engine.records;
      const by = (m: string): CallRecord[] => rec.filter((r) => r.method === m);
      const train = by('train')[0]!;
      const generate = by('generate')[0]!;
      const roundTrips = sum(rec.map((r) => r.ms));
      const row: EngineTask = {
        taskId,
        overheadMs: roundTrips - 1000 * sum(rec.map((r) => r.computeSeconds)),
        resetMs: sum(by('reset_adapter').map((r) => r.ms)),
        countTokensCalls: by('count_tokens').length,
        countTokensMs: sum(by('count_tokens').map((r) => r.ms)),
        trainRoundTripMs: train.ms,
        trainComputeMs: 1000 * train.computeSeconds,
        generateRoundTripMs: generate.ms,
        generateComputeMs: 1000 * generate.computeSeconds,
        trainPayloadBytes: train.bytesSent,
        generatePayloadBytes: generate.bytesSent,
        samples: tuned.samples,
        sequences: predicted.sequences,
        nodePrepMs: 1000 * (tuned.seconds + predicted.seconds) - roundTrips,
      };
      engineTasks.push(row);
      if (args['save-payloads'] !== undefined) {
        saved.push({ task_id: taskId, calls: rec.map((r) => ({ method: r.method, payload: r.payload })) });
      }
      log(
        `engine ${taskId}: overhead ${fmt(row.overheadMs)} ms (reset ${fmt(row.resetMs)} ms, ` +
          `${row.samples} samples = ${fmt(row.trainPayloadBytes / 1024)} KiB)`,
      );

      // Interleaved with the engine tasks so both see the same load on a shared machine.
      if (naiveRuns.length < N_NAIVE) {
        const samplesFile = join(dir, `${taskId}.samples.json`);
        const t = train.payload as { samples: unknown; max_seq_len: number };
        writeFileSync(samplesFile, JSON.stringify(t.samples));
        const run = await runNaive(python, model, samplesFile, t.max_seq_len, taskId);
        naiveRuns.push(run);
        log(`naive  ${taskId}: ${fmt(run.seconds, 2)} s from spawn to exit`);
      }
    }
    if (engineTasks.length === 0) throw new Error(`no task of ${DATA} fits the model`);

    const engineMs = median(engineTasks.map((t) => t.overheadMs));
    const naiveS = median(naiveRuns.map((r) => r.seconds));
    const ratio = (naiveS * 1000) / engineMs;
    const m = (f: (t: EngineTask) => number): number => median(engineTasks.map(f));
    const mn = (f: (r: NaiveRun) => number): number => median(naiveRuns.map(f));
    const result = {
      benchmark: 'engine-overhead',
      date: new Date().toISOString(),
      machine: {
        cpu: cpus()[0]?.model ?? 'unknown',
        cores: cpus().length,
        gpu: null,
        node: process.version,
        python: versions.python,
        torch: versions.torch,
        transformers: versions.transformers,
        peft: versions.peft,
      },
      setup: {
        data: shown(DATA),
        tasks: engineTasks.length,
        naiveRuns: naiveRuns.length,
        threads: THREADS,
        model: { kind: 'makeTinyModel defaults', nParams: tiny.nParams, device: 'cpu', dtype: 'float32' },
        lora: engine.options.lora,
        fineTune: 'fineTuneTask defaults, steps 1',
        predict: `predictTask defaults (8 views per test input), generation capped at ${GENERATE_CAP} new tokens`,
      },
      engine: {
        startSeconds: engineStartSeconds,
        overheadMsMedian: engineMs,
        overheadMsMin: Math.min(...engineTasks.map((t) => t.overheadMs)),
        overheadMsMax: Math.max(...engineTasks.map((t) => t.overheadMs)),
        pingMsMedian: median(pingMs),
        resetMsMedian: m((t) => t.resetMs),
        tasks: engineTasks,
      },
      naive: {
        secondsMedian: naiveS,
        importsSecondsMedian: mn((r) => r.importsSeconds),
        loadSecondsMedian: mn((r) => r.loadSeconds),
        attachSecondsMedian: mn((r) => r.attachSeconds),
        trainSecondsMedian: mn((r) => r.trainSeconds),
        startExitSecondsMedian: mn((r) => r.startExitSeconds),
        runs: naiveRuns,
      },
      ratio,
      target: 50,
    };

    if (args['save-payloads'] !== undefined) {
      // Every call of each task, in order, so another driver (bench/gpu) can replay them.
      const file = resolve(args['save-payloads']);
      const text = `${JSON.stringify({ source: shown(DATA), tasks: saved })}\n`;
      writeFileSync(file, file.endsWith('.gz') ? gzipSync(text, { level: 9 }) : text);
      log(`payloads of ${saved.length} task(s) written to ${args['save-payloads']}`);
    }
    if (args.out !== undefined) writeFileSync(resolve(args.out), `${JSON.stringify(result, null, 2)}\n`);
    if (args.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    const lines = [
      `Per-task overhead, engine vs a fresh Python process per task (${result.date.slice(0, 10)})`,
      `machine: ${result.machine.cpu}, ${result.machine.cores} cores, no GPU; torch ${String(versions.torch)}, ` +
        `${THREADS} thread(s)`,
      `model: tiny random Qwen2 (${tiny.nParams.toLocaleString('en-US')} params, float32, CPU); ` +
        `tasks: ${engineTasks.length} from ${shown(DATA)}`,
      '',
      formatTable(
        ['measure', 'value'],
        [
          [`engine overhead per task (median of ${engineTasks.length} tasks)`, `${fmt(engineMs)} ms`],
          [`naive cost per task (median of ${naiveRuns.length} processes)`, `${fmt(naiveS, 2)} s`],
          ['ratio naive / engine (target ≥ 50×)', `${fmt(ratio, 0)}×`],
        ],
        { align: ['left', 'right'] },
      ),
      '',
      'engine overhead, medians per task:',
      formatTable(
        ['part', 'ms'],
        [
          [
            'reset_adapter round trip',
            fmt(
              m((t) => t.resetMs),
              2,
            ),
          ],
          [
            `count_tokens round trips (${m((t) => t.countTokensCalls)} per task, token budget)`,
            fmt(
              m((t) => t.countTokensMs),
              2,
            ),
          ],
          [
            `train round trip − compute (payload ${fmt(m((t) => t.trainPayloadBytes) / 1024)} KiB)`,
            fmt(
              m((t) => t.trainRoundTripMs - t.trainComputeMs),
              2,
            ),
          ],
          [
            `generate round trip − compute (payload ${fmt(m((t) => t.generatePayloadBytes) / 1024)} KiB)`,
            fmt(
              m((t) => t.generateRoundTripMs - t.generateComputeMs),
              2,
            ),
          ],
          ['bare round trip (ping, empty payload)', fmt(median(pingMs), 2)],
          [
            '(not counted) Node-side sample building, parsing, voting',
            fmt(
              m((t) => t.nodePrepMs),
              1,
            ),
          ],
          [
            '(not counted) Python train + generate compute',
            fmt(m((t) => t.trainComputeMs + t.generateComputeMs)),
          ],
        ],
        { align: ['left', 'right'] },
      ),
      '',
      'naive cost, medians per process:',
      formatTable(
        ['part', 's'],
        [
          ['interpreter start + exit', fmt(result.naive.startExitSecondsMedian, 2)],
          ['import torch, transformers, peft, arc_ttft', fmt(result.naive.importsSecondsMedian, 2)],
          ['load model + tokenizer', fmt(result.naive.loadSecondsMedian, 2)],
          ['attach LoRA', fmt(result.naive.attachSecondsMedian, 2)],
          ['first training step (same samples)', fmt(result.naive.trainSecondsMedian, 2)],
        ],
        { align: ['left', 'right'] },
      ),
      '',
      `one-off engine start (Python start, imports, model load): ${fmt(engineStartSeconds, 2)} s`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
