/**
 * One run per output folder: two runs appending to the same journal tear each other's lines and run the same
 * tasks twice (a notebook cell started twice). A lock file holds the owner's pid; one left by a run that is
 * gone (killed, crashed) on this machine is taken over.
 *
 * @module
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { FileError } from '../errors.js';

/** The lock file's name inside the output folder. */
export const LOCK_FILE = '.arc-ttft.lock';

interface LockOwner {
  readonly pid: number;
  readonly host: string;
  readonly startedAt: string;
}

/** Whether a process with this pid runs on this machine (EPERM: it runs, as another user). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readOwner(path: string): LockOwner | undefined {
  try {
    const value = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockOwner>;
    if (typeof value.pid === 'number' && typeof value.host === 'string') {
      return { pid: value.pid, host: value.host, startedAt: String(value.startedAt ?? '?') };
    }
  } catch {
    // Unreadable or half written (its owner died while writing it): stale.
  }
  return undefined;
}

/** A held lock on an output folder; {@link OutputLock.release} removes it. */
export class OutputLock {
  readonly path: string;
  #held = true;

  private constructor(path: string) {
    this.path = path;
  }

  /**
   * Takes the folder's lock.
   * @throws {@link FileError} when another live run holds it, naming that run and what to do.
   */
  static take(dir: string): OutputLock {
    const path = join(dir, LOCK_FILE);
    const me: LockOwner = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString() };
    // Twice at most: the second try follows the removal of a stale lock.
    for (let attempt = 0; attempt < 2; attempt++) {
      let fd: number;
      try {
        fd = openSync(path, 'wx');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new FileError({ path, message: 'the output folder cannot be locked', cause: error });
        }
        const owner = readOwner(path);
        const stale = owner === undefined || (owner.host === me.host && !alive(owner.pid));
        if (!stale || attempt > 0) {
          const who = owner ? `pid ${owner.pid} on ${owner.host}, started ${owner.startedAt}` : 'unknown';
          throw new FileError({
            path: dir,
            message: `another arc-ttft run (${who}) is writing to this output folder; wait for it to finish or use another folder (if that run is gone, delete ${LOCK_FILE})`,
          });
        }
        rmSync(path, { force: true });
        continue;
      }
      try {
        writeSync(fd, JSON.stringify(me));
      } finally {
        closeSync(fd);
      }
      return new OutputLock(path);
    }
    // Unreachable: the loop returns or throws.
    throw new FileError({ path, message: 'the output folder cannot be locked' });
  }

  /** Removes the lock (once; later calls do nothing). */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    rmSync(this.path, { force: true });
  }
}
