/**
 * Process-wide cleanup of live bridges on SIGINT, SIGTERM and `process.exit()`. Handlers are installed
 * only while at least one bridge has a live process, so an idle program keeps Node's default
 * behaviour; after killing the children the signal is re-raised (when no other listener owns it) so
 * Ctrl-C still ends the program.
 *
 * @module
 * @internal
 */

/** Kills a bridge's processes synchronously (signals only: no awaiting inside a signal handler). */
export type KillNow = () => void;

const live = new Set<KillNow>();
const SIGNALS = ['SIGINT', 'SIGTERM'] as const;
let installed = false;

function killAll(): void {
  for (const kill of live) {
    try {
      kill();
    } catch {
      // best effort: the process may be gone already
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  killAll();
  uninstall();
  // Our handler suppressed Node's default action; restore it unless the program handles the signal.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function onExit(): void {
  killAll();
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const signal of SIGNALS) process.on(signal, onSignal);
  process.on('exit', onExit);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  for (const signal of SIGNALS) process.off(signal, onSignal);
  process.off('exit', onExit);
}

/** Registers a live bridge process group; returns the function that unregisters it. */
export function trackLive(kill: KillNow): () => void {
  live.add(kill);
  install();
  return () => {
    live.delete(kill);
    if (live.size === 0) uninstall();
  };
}
