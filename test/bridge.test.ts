import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bridge, type BridgeExitEvent, type BridgeOptions, createBridge } from '../src/bridge/bridge.js';
import { PYTHON_LOADER } from '../src/bridge/protocol.js';
import { BridgeError, TimeoutError, ValidationError } from '../src/errors.js';
import { ROOT } from './helpers.js';

const FIXTURES = join(ROOT, 'test/fixtures/python');
const CHILD = join(ROOT, 'test/fixtures/node/bridge-child.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const OPTIONS: BridgeOptions = { pythonBin: 'python3', pythonPath: [FIXTURES], module: 'bridge_fixture' };

/** A process counts as gone when it no longer exists or is a zombie waiting to be reaped. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

async function waitFor(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

/** Catches the rejection of `promise` and reports how long it took. */
async function rejection(promise: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const start = Date.now();
  try {
    await promise;
  } catch (error) {
    return { error, ms: Date.now() - start };
  }
  throw new Error('expected the promise to reject');
}

describe('bridge: calls', () => {
  let bridge: Bridge;
  const exits: BridgeExitEvent[] = [];
  const logs: string[] = [];

  beforeAll(async () => {
    bridge = await createBridge(OPTIONS, {
      onExit: (event) => exits.push(event),
      onLog: (line, stream) => logs.push(`${stream}:${line}`),
    });
  });
  afterAll(async () => {
    await bridge.close();
  });

  it('round-trips a call to the Python process', async () => {
    const pong = await bridge.call<{ pong: boolean; pid: number }>('ping');
    expect(pong.pong).toBe(true);
    expect(pong.pid).toBe(bridge.pythonPid);
    expect(bridge.pid).toBeTypeOf('number');
    expect(bridge.pid).not.toBe(pong.pid);
  });

  it('runs concurrent calls one at a time, in order', async () => {
    const finished: number[] = [];
    const calls = Array.from({ length: 12 }, (_, i) =>
      (i % 3 === 0
        ? bridge.call<unknown>('sleep', { seconds: 0.02 }).then(() => i)
        : bridge.call<{ i: number }>('echo', { i }).then((r) => r.i)
      ).then((value) => {
        finished.push(value);
        return value;
      }),
    );
    expect(bridge.pendingCount).toBe(12);
    const results = await Promise.all(calls);
    expect(results).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(finished).toEqual(results);
  });

  it('moves a ~5 MB JSON payload both ways', async () => {
    const text = 'ab"\\\n\u00e9'.repeat(1_000_000);
    const back = await bridge.call<{ text: string }>('echo', { text });
    expect(back.text).toBe(text);
    const big = await bridge.call<{ text: string; size: number }>('big', { size: 5_000_000 });
    expect(big.text.length).toBe(5_000_000);
  });

  it('surfaces a Python exception as BridgeError with type, message and traceback', async () => {
    const pid = bridge.pythonPid;
    const { error } = await rejection(bridge.call('raise', { message: 'boom' }));
    expect(error).toBeInstanceOf(BridgeError);
    const e = error as BridgeError;
    expect(e.reason).toBe('exception');
    expect(e.pythonType).toBe('ValueError');
    expect(e.pythonMessage).toBe('boom');
    expect(e.message).toContain('ValueError: boom');
    expect(e.traceback).toContain('_raise_value_error');
    // An exception is not a crash: the same Python serves the next call.
    expect(await bridge.call<{ pid: number }>('ping')).toMatchObject({ pid });
  });

  it('passes Python output to onLog', async () => {
    await bridge.call('log', { stdout: 'to-stdout-42', stderr: 'to-stderr-42' });
    expect(await waitFor(() => logs.includes('stderr:to-stderr-42'), 2000)).toBe(true);
    expect(await waitFor(() => logs.includes('stdout:to-stdout-42'), 2000)).toBe(true);
  });

  it('rejects a crash at once, rejects the calls queued behind it, and restarts for the next call', async () => {
    const oldPid = bridge.pythonPid!;
    const starts = bridge.startCount;
    const crash = rejection(bridge.call('crash', { code: 3 }));
    const queued = rejection(bridge.call('ping'));
    const { error, ms } = await crash;
    expect(ms).toBeLessThan(5000);
    expect(error).toBeInstanceOf(BridgeError);
    expect((error as BridgeError).reason).toBe('crashed');
    expect((error as BridgeError).message).toContain('exited with code 3');
    expect((error as BridgeError).message).toContain('fixture: crashing now');
    const q = (await queued).error as BridgeError;
    expect(q.reason).toBe('crashed');
    expect(q.message).toContain('not run');
    expect(exits.at(-1)).toMatchObject({ cause: 'crashed', code: 3, pythonPid: oldPid });

    const pong = await bridge.call<{ pid: number }>('ping');
    expect(pong.pid).not.toBe(oldPid);
    expect(bridge.startCount).toBe(starts + 1);
  });

  it('notices a Python process killed from outside during a call', async () => {
    const oldPid = bridge.pythonPid!;
    const call = rejection(bridge.call('sleep', { seconds: 30 }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    process.kill(oldPid, 'SIGKILL');
    const { error, ms } = await call;
    expect(ms).toBeLessThan(5000);
    expect((error as BridgeError).reason).toBe('crashed');
    expect((error as BridgeError).message).toContain('SIGKILL');
    expect((await bridge.call<{ pid: number }>('ping')).pid).not.toBe(oldPid);
  });

  it('times out a call, stops that Python, and recovers with a fresh one', async () => {
    const oldPid = bridge.pythonPid!;
    const { error } = await rejection(bridge.call('sleep', { seconds: 30 }, { timeoutMs: 300 }));
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error).toMatchObject({ operation: 'sleep', timeoutMs: 300 });
    expect(await waitFor(() => !isAlive(oldPid), 3000)).toBe(true);
    const pong = await bridge.call<{ pid: number }>('ping');
    expect(pong.pid).not.toBe(oldPid);
    expect(exits.at(-1)).toMatchObject({ cause: 'timeout', pythonPid: oldPid });
  });

  it('aborts: a queued call is dropped quietly, a running one stops Python', async () => {
    const pid = bridge.pythonPid!;
    const running = bridge.call('sleep', { seconds: 0.3 });
    const controller = new AbortController();
    const queued = rejection(bridge.call('ping', {}, { signal: controller.signal }));
    controller.abort(new Error('changed my mind'));
    expect(((await queued).error as Error).message).toBe('changed my mind');
    await running;
    expect(bridge.pythonPid).toBe(pid);

    const inFlight = new AbortController();
    const call = rejection(bridge.call('sleep', { seconds: 30 }, { signal: inFlight.signal }));
    setTimeout(() => inFlight.abort(), 100);
    expect(((await call).error as Error).name).toBe('AbortError');
    expect((await bridge.call<{ pid: number }>('ping')).pid).not.toBe(pid);
  });

  it('validates its arguments', async () => {
    await expect(bridge.call('')).rejects.toBeInstanceOf(ValidationError);
    await expect(bridge.call('echo', { n: 1n })).rejects.toBeInstanceOf(ValidationError);
    await expect(bridge.call('echo', {}, { timeoutMs: -1 })).rejects.toBeInstanceOf(ValidationError);
  });
});

describe('bridge: starting and stopping', () => {
  it('runs onStart after every start, before queued calls', async () => {
    const sessions: number[] = [];
    const bridge = await createBridge(OPTIONS, {
      onStart: async (session) => {
        sessions.push(session.startCount);
        await session.call('set_state', { loaded: session.startCount, pid: session.pythonPid });
      },
    });
    try {
      expect(await bridge.call('get_state')).toEqual({ loaded: 1, pid: bridge.pythonPid });
      await bridge.restart();
      expect(await bridge.call('get_state')).toEqual({ loaded: 2, pid: bridge.pythonPid });
      expect(sessions).toEqual([1, 2]);
    } finally {
      await bridge.close();
    }
  });

  it('fails to start when onStart throws, keeping the error as cause', async () => {
    const problem = new Error('no weights here');
    const { error } = await rejection(
      createBridge(OPTIONS, {
        onStart: async (session) => {
          await session.call('ping');
          throw problem;
        },
      }),
    );
    expect((error as BridgeError).reason).toBe('start_failed');
    expect((error as BridgeError).message).toContain('onStart failed: no weights here');
    expect((error as BridgeError).cause).toBe(problem);
  });

  it('keeps the Python traceback of an onStart call that raised', async () => {
    const { error } = await rejection(
      createBridge(OPTIONS, { onStart: (session) => session.call('raise', { message: 'bad config' }) }),
    );
    expect(error).toMatchObject({ reason: 'start_failed', pythonType: 'ValueError' });
    expect((error as BridgeError).traceback).toContain('bad config');
  });

  it('close() during start rejects the waiting calls as closed and stops the processes', async () => {
    const bridge = new Bridge(OPTIONS);
    const call = rejection(bridge.call('ping'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const pid = bridge.pid;
    await bridge.close();
    expect(((await call).error as BridgeError).reason).toBe('closed');
    if (pid !== undefined) expect(isAlive(pid)).toBe(false);
  });

  it('fails to start with a bad interpreter path, without crashing Node', async () => {
    const { error } = await rejection(createBridge({ ...OPTIONS, pythonBin: '/nonexistent/bin/python3' }));
    expect(error).toBeInstanceOf(BridgeError);
    expect((error as BridgeError).reason).toBe('start_failed');
    expect((error as BridgeError).message).toContain('/nonexistent/bin/python3');
  });

  it('fails to start when Python is not ready within startTimeoutMs', async () => {
    const { error } = await rejection(createBridge({ ...OPTIONS, startTimeoutMs: 50 }));
    expect((error as BridgeError).reason).toBe('start_failed');
    expect((error as BridgeError).message).toContain('did not start within 50 ms');
  });

  it('fails to start when the interpreter exits at once', async () => {
    const { error } = await rejection(createBridge({ ...OPTIONS, pythonBin: 'false' }));
    expect((error as BridgeError).reason).toBe('start_failed');
    expect((error as BridgeError).message).toContain('before it was ready');
  });

  it('fails to start with the ImportError text when the module cannot be imported', async () => {
    const bridge = new Bridge({ ...OPTIONS, module: 'no_such_module_xyz' });
    const { error } = await rejection(bridge.call('ping'));
    expect((error as BridgeError).reason).toBe('start_failed');
    expect((error as BridgeError).message).toContain("No module named 'no_such_module_xyz'");
    expect((error as BridgeError).traceback).toContain('ModuleNotFoundError');
    await bridge.close();
  });

  it('rejects pending and later calls after close(); close() is idempotent', async () => {
    const bridge = await createBridge(OPTIONS);
    const pythonPid = bridge.pythonPid!;
    const pending = rejection(bridge.call('sleep', { seconds: 30 }));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closing = bridge.close();
    expect(bridge.close()).toBe(closing);
    expect(((await pending).error as BridgeError).reason).toBe('closed');
    await closing;
    expect(isAlive(pythonPid)).toBe(false);
    await expect(bridge.call('ping')).rejects.toMatchObject({ reason: 'closed' });
  });

  it('refuses a time limit past the longest timer (it would fire at once)', async () => {
    const bridge = await createBridge(OPTIONS);
    await expect(bridge.call('ping', {}, { timeoutMs: 2 ** 31 })).rejects.toMatchObject({
      name: 'ValidationError',
      message: expect.stringContaining('at most 2147483647 ms'),
    });
    await bridge.close();
  });

  it('rejects a start() or restart() still queued when close() comes', async () => {
    const bridge = await createBridge(OPTIONS);
    const pending = rejection(bridge.call('sleep', { seconds: 30 }));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const queued = [rejection(bridge.restart()), rejection(bridge.start())];
    await bridge.close();
    for (const r of [pending, ...queued]) expect(((await r).error as BridgeError).reason).toBe('closed');
  });
});

describe('bridge: process lifetime', () => {
  function runChild(mode: string): {
    child: ChildProcess;
    firstLine: Promise<{ pid: number; pythonPid: number }>;
  } {
    const child = spawn(process.execPath, ['--import', TSX, CHILD, mode], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      err += chunk;
    });
    const firstLine = new Promise<{ pid: number; pythonPid: number }>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk;
        const line = out.split('\n')[0];
        if (out.includes('\n') && line !== undefined) resolve(JSON.parse(line));
      });
      child.on('exit', () => reject(new Error(`child exited early: ${out} ${err}`)));
    });
    return { child, firstLine };
  }

  function exitOf(
    child: ChildProcess,
    timeoutMs: number,
  ): Promise<{ code: number | null; signal: string | null }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error('child did not exit in time'));
      }, timeoutMs);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal });
      });
    });
  }

  it('lets Node exit by itself after close()', async () => {
    const { child, firstLine } = runChild('close');
    const exit = exitOf(child, 15_000);
    const { pythonPid } = await firstLine;
    expect(await exit).toEqual({ code: 0, signal: null });
    expect(isAlive(pythonPid)).toBe(false);
  });

  it('does not keep Node alive while idle, even without close()', async () => {
    const { child, firstLine } = runChild('idle');
    const exit = exitOf(child, 15_000);
    const { pythonPid } = await firstLine;
    expect(await exit).toEqual({ code: 0, signal: null });
    expect(await waitFor(() => !isAlive(pythonPid), 3000)).toBe(true);
  });

  it('leaves no orphan Python when its Node process is SIGKILLed mid-call', async () => {
    const { child, firstLine } = runChild('hold');
    const exit = exitOf(child, 15_000);
    const { pid, pythonPid } = await firstLine;
    expect(isAlive(pythonPid)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 300)); // let the long call start
    child.kill('SIGKILL');
    await exit;
    expect(await waitFor(() => !isAlive(pythonPid), 3000)).toBe(true);
    expect(await waitFor(() => !isAlive(pid), 3000)).toBe(true);
  });

  it('on SIGTERM, kills the bridge processes and still exits by the signal', async () => {
    const { child, firstLine } = runChild('hold');
    const exit = exitOf(child, 15_000);
    const { pythonPid } = await firstLine;
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGTERM');
    expect(await exit).toEqual({ code: null, signal: 'SIGTERM' });
    expect(await waitFor(() => !isAlive(pythonPid), 3000)).toBe(true);
  });
});

describe('bridge: the host loader', () => {
  it("starts its parent watchdog unless ARC_TTFT_WATCHDOG=0, as the engine's own does", () => {
    const threads = (mode: string | undefined): string[] => {
      const env = { ...process.env };
      if (mode === undefined) delete env.ARC_TTFT_WATCHDOG;
      else env.ARC_TTFT_WATCHDOG = mode;
      const code = `${PYTHON_LOADER}\n_watch_parent()\nprint(json.dumps(sorted(t.name for t in threading.enumerate())))`;
      const r = spawnSync('python3', ['-c', code], { env, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as string[];
    };
    expect(threads(undefined)).toContain('arc-ttft-parent-watchdog');
    expect(threads('poll')).toContain('arc-ttft-parent-watchdog');
    expect(threads('0')).not.toContain('arc-ttft-parent-watchdog');
  });
});
