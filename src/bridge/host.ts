/**
 * Bridge host: the script a {@link Bridge} forks. It hosts pythonia (which spawns Python when it is
 * loaded and cannot restart in place), imports the Python module, serves `call` requests from the
 * parent over IPC one JSON string at a time, reports Python's exit at once, and takes Python down
 * with it when the parent goes away. One host serves one Python process for its whole life.
 *
 * Built as its own entry (`dist/bridge-host.js`); run under tsx from `src/` in development.
 *
 * @module
 * @internal
 */
import type { ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { HOST_MODULE_ENV, type HostToParent, type ParentToHost, PYTHON_LOADER } from './protocol.js';

/** The little of pythonia this host uses (its own typings are `any` throughout). */
type PyFunction = (...args: unknown[]) => Promise<unknown>;
interface PyDict {
  get(key: string): Promise<PyFunction>;
}
interface PyBuiltins {
  dict(): Promise<PyDict>;
  exec(source: string, globals: PyDict): Promise<unknown>;
}
interface Pythonia {
  python: ((name: string) => Promise<unknown>) & { setFastMode(value: boolean): void };
  com: { proc: ChildProcess | null };
}

/** How long Python gets to leave on its own (end of input) before SIGTERM, then SIGKILL. */
const GRACE_MS = 2000;
const TERM_MS = 1000;

let python: ChildProcess | null = null;
let pythonGone = false;
let stopping = false;
/** Calls sent to Python and not answered yet. */
let busy = 0;
let markPythonGone: () => void = () => {};
const pythonExit = new Promise<void>((resolve) => {
  markPythonGone = resolve;
});

function send(message: HostToParent): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) {
      resolve();
      return;
    }
    // Errors mean the parent is gone; 'disconnect' handles that.
    process.send(message, undefined, {}, () => resolve());
  });
}

function errorText(error: unknown): string {
  if (error instanceof Error) return error.stack && error.stack !== '' ? error.stack : error.message;
  return String(error);
}

/**
 * Stops Python and exits the host. An idle Python gets end of input (it then exits normally), a busy
 * one SIGTERM at once (its answer is no longer wanted); SIGKILL follows if it lingers.
 */
async function shutdown(code = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  const proc = python;
  if (proc !== null && !pythonGone) {
    const wait = (ms: number): Promise<boolean> =>
      Promise.race([
        pythonExit.then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms)),
      ]);
    try {
      // Closing pythonia's channel ends Python's read loop: it exits normally when idle.
      proc.disconnect?.();
    } catch {
      // already closed
    }
    if (busy > 0 || !(await wait(GRACE_MS))) {
      proc.kill('SIGTERM');
      if (!(await wait(TERM_MS))) {
        proc.kill('SIGKILL');
        await wait(TERM_MS);
      }
    }
  }
  process.exit(code);
}

function onPythonGone(code: number | null, signal: NodeJS.Signals | null, error?: string): void {
  if (pythonGone) return;
  pythonGone = true;
  markPythonGone();
  if (stopping) return; // shutdown() exits once it sees this
  void send({ type: 'python_exit', code, signal, error }).then(() => process.exit(0));
}

async function main(): Promise<void> {
  const moduleName = process.env[HOST_MODULE_ENV];
  delete process.env[HOST_MODULE_ENV];
  if (process.send === undefined || moduleName === undefined || moduleName === '') {
    process.stderr.write('arc-ttft bridge host: must be forked by the bridge\n');
    process.exit(2);
  }
  // The bridge owns timeouts; pythonia's own (100 s by default) would leave Python busy anyway.
  process.env.REQ_TIMEOUT = '0';

  process.on('disconnect', () => void shutdown());
  process.on('uncaughtException', (error) => {
    process.stderr.write(`arc-ttft bridge host: ${errorText(error)}\n`);
    if (python !== null && !pythonGone) python.kill('SIGKILL');
    process.exit(1);
  });

  let callPython: PyFunction | undefined;
  const pendingCalls: Array<Extract<ParentToHost, { type: 'call' }>> = [];
  const serve = async (message: Extract<ParentToHost, { type: 'call' }>): Promise<void> => {
    let json: unknown;
    let failure: string | undefined;
    busy += 1;
    try {
      json = await callPython!(message.method, message.payloadJson);
    } catch (error) {
      failure = errorText(error);
    } finally {
      busy -= 1;
    }
    if (failure === undefined && typeof json === 'string')
      await send({ type: 'result', id: message.id, json });
    else
      await send({ type: 'call_failed', id: message.id, message: failure ?? 'the reply was not a string' });
  };
  process.on('message', (message: ParentToHost) => {
    if (message.type === 'shutdown') void shutdown();
    else if (message.type === 'call') {
      if (callPython === undefined) pendingCalls.push(message);
      else void serve(message);
    }
  });

  // pythonia spawns Python synchronously at load time (PYTHON_BIN is already in our env); a bad
  // interpreter path emits 'error' on the next tick, so the listeners go on before anything else.
  const pythonia = createRequire(import.meta.url)('pythonia') as Pythonia;
  const proc = pythonia.com.proc;
  if (proc === null) {
    process.stderr.write('arc-ttft bridge host: pythonia did not start Python\n');
    process.exit(1);
  }
  python = proc;
  proc.on('error', (error: NodeJS.ErrnoException) => {
    // Spawn failures (ENOENT, EACCES) never emit 'exit'; later EPIPEs are followed by 'exit'.
    if (proc.pid === undefined)
      onPythonGone(null, null, `cannot run the Python interpreter: ${error.message}`);
  });
  proc.on('exit', (code, signal) => onPythonGone(code, signal));
  if (proc.pid === undefined) return;

  try {
    pythonia.python.setFastMode(true);
    const builtins = (await pythonia.python('builtins')) as PyBuiltins;
    const namespace = await builtins.dict();
    await builtins.exec(PYTHON_LOADER, namespace);
    const load = await namespace.get('load');
    const loaded = JSON.parse(String(await load(moduleName))) as
      | { ok: true; result: { pid: number; version: string; executable: string } }
      | { ok: false; error: { type: string; message: string; traceback: string } };
    if (!loaded.ok) {
      await send({
        type: 'start_failed',
        message: `${loaded.error.type}: ${loaded.error.message}`,
        traceback: loaded.error.traceback,
      });
      await shutdown(0);
      return;
    }
    callPython = await namespace.get('call');
    await send({
      type: 'ready',
      pythonPid: proc.pid,
      pythonVersion: loaded.result.version,
      executable: loaded.result.executable,
    });
  } catch (error) {
    await send({ type: 'start_failed', message: `pythonia failed during start: ${errorText(error)}` });
    await shutdown(0);
    return;
  }
  for (const message of pendingCalls.splice(0)) void serve(message);
}

void main();
