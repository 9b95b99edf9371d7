/**
 * Messages between a {@link Bridge} and its host process (a forked Node child that hosts pythonia).
 * Internal: shared by `bridge.ts` and `host.ts`, not part of the public API.
 *
 * @module
 * @internal
 */

/** Environment variable that tells the host which Python module to import. */
export const HOST_MODULE_ENV = 'ARC_TTFT_BRIDGE_MODULE';

/** Parent → host. */
export type ParentToHost =
  /** Run `module.dispatch(method, payloadJson)`. */
  | { readonly type: 'call'; readonly id: number; readonly method: string; readonly payloadJson: string }
  /** Stop Python (gracefully, then by force) and exit. */
  | { readonly type: 'shutdown' };

/** Host → parent. */
export type HostToParent =
  /** Python started and the module imported; calls may follow. */
  | {
      readonly type: 'ready';
      readonly pythonPid: number;
      readonly pythonVersion: string;
      readonly executable: string;
    }
  /** Python could not start or the module could not be imported. */
  | { readonly type: 'start_failed'; readonly message: string; readonly traceback?: string | undefined }
  /** The reply envelope (a JSON string) of call `id`. */
  | { readonly type: 'result'; readonly id: number; readonly json: string }
  /** Call `id` failed inside pythonia itself (no envelope came back). */
  | { readonly type: 'call_failed'; readonly id: number; readonly message: string }
  /** The Python process exited; the host exits right after. */
  | {
      readonly type: 'python_exit';
      readonly code: number | null;
      readonly signal: string | null;
      readonly error?: string | undefined;
    };

/**
 * Python source the host runs (with `exec` in a fresh namespace) before importing the user's module.
 * It imports the module and wraps `dispatch` so that failures, including a failed import or a
 * `dispatch` that raises, come back as a JSON envelope: pythonia's own exceptions lose their text.
 * `SystemExit` and `KeyboardInterrupt` raised by `dispatch` still end the process (a crash).
 * It also starts a parent-death watchdog (a daemon thread that exits when the host goes away, and
 * PR_SET_PDEATHSIG where available), so a busy Python never outlives its host; `ARC_TTFT_WATCHDOG` switches it as
 * it does `arc_ttft.entry`'s (`0` off, `poll` without PR_SET_PDEATHSIG).
 */
export const PYTHON_LOADER = `
import importlib, json, os, sys, threading, time, traceback

_module = None

def _error(exc):
    return json.dumps({"ok": False, "error": {
        "type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}})

def _watch_parent():
    # The same switch as arc_ttft.entry's watchdog: 0 = off, poll = no PR_SET_PDEATHSIG.
    mode = os.environ.get("ARC_TTFT_WATCHDOG", "1")
    if mode == "0":
        return
    if mode != "poll":
        try:
            import ctypes, signal
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except Exception:
            pass
    parent = os.getppid()
    def loop():
        while True:
            time.sleep(0.25)
            if os.getppid() != parent:
                os._exit(70)
    threading.Thread(target=loop, name="arc-ttft-parent-watchdog", daemon=True).start()

def load(name):
    global _module
    try:
        _watch_parent()
        _module = importlib.import_module(name)
        if not callable(getattr(_module, "dispatch", None)):
            raise AttributeError("module %r has no callable dispatch(method, payload_json)" % name)
        return json.dumps({"ok": True, "result": {
            "pid": os.getpid(), "version": sys.version.split()[0], "executable": sys.executable}})
    except BaseException as exc:
        return _error(exc)

def call(method, payload_json):
    # Exception only: SystemExit and KeyboardInterrupt still stop the process (reported as a crash).
    try:
        out = _module.dispatch(method, payload_json)
        if not isinstance(out, str):
            raise TypeError("dispatch(%r) returned %s, not a JSON string" % (method, type(out).__name__))
        return out
    except Exception as exc:
        return _error(exc)
`;
