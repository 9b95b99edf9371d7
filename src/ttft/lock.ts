/**
 * One run per output folder: two runs appending to the same journal tear each other's lines and run the same
 * tasks twice (a notebook cell started twice). A lock file holds the owner's pid; one left by a run that is
 * gone (killed, crashed) on this machine is taken over.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { FileError } from '../errors.js';

/** The lock file's name inside the output folder. */
export const LOCK_FILE = '.arc-ttft.lock';

interface LockOwner {
  readonly pid: number;
  readonly host: string;
  readonly startedAt: string;
  /** Tells this lock from another one of the same process (a release removes only its own). */
  readonly token: string;
}

/** The lock files this process holds: a file naming our pid that is not one of them was left by an earlier
 * process with the same pid (a restarted container), so it is stale. */
const held = new Set<string>();

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
      return {
        pid: value.pid,
        host: value.host,
        startedAt: String(value.startedAt ?? '?'),
        token: String(value.token ?? ''),
      };
    }
  } catch {
    // Unreadable: never one of ours (a lock appears whole, by link), so stale.
  }
  return undefined;
}

function isStale(path: string, owner: LockOwner | undefined): boolean {
  if (owner === undefined) return true;
  if (owner.host !== hostname()) return false; // another machine's pid cannot be checked
  if (owner.pid === process.pid) return !held.has(path);
  return !alive(owner.pid);
}

/** Creates the lock file; false when one exists. */
function create(path: string, temp: string, me: LockOwner): boolean {
  try {
    linkSync(temp, path);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // A file system without hard links (some network and FUSE mounts): create in place. Another run could
    // then read it empty for an instant, which only the link avoids.
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw error;
  }
  try {
    writeFileSync(path, JSON.stringify(me), { flag: 'wx' });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/** A held lock on an output folder; {@link OutputLock.release} removes it. */
export class OutputLock {
  readonly path: string;
  readonly #token: string;
  #held = true;

  private constructor(path: string, token: string) {
    this.path = path;
    this.#token = token;
    held.add(path);
  }

  /**
   * Takes the folder's lock.
   * @throws {@link FileError} when another live run holds it, naming that run and what to do.
   */
  static take(dir: string): OutputLock {
    const path = join(dir, LOCK_FILE);
    const token = randomBytes(8).toString('hex');
    const me: LockOwner = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), token };
    // Written aside, then linked into place: the lock appears whole or not at all (link fails if it exists),
    // so no other run can read it half written and take it for stale.
    const temp = `${path}.${process.pid}.${token}`;
    try {
      writeFileSync(temp, JSON.stringify(me));
      // Twice at most: the second try follows the removal of a stale lock.
      for (let attempt = 0; attempt < 2; attempt++) {
        if (create(path, temp, me)) return new OutputLock(path, token);
        const owner = readOwner(path);
        if (attempt > 0 || !isStale(path, owner)) {
          const who = owner ? `pid ${owner.pid} on ${owner.host}, started ${owner.startedAt}` : 'unknown';
          throw new FileError({
            path: dir,
            message: `another arc-ttft run (${who}) is writing to this output folder; wait for it to finish or use another folder (if that run is gone, delete ${LOCK_FILE})`,
          });
        }
        // Two runs that find the same stale lock at once can both get here; the later one's removal may
        // then take the earlier one's fresh lock. Rare (both started within the same moment after a crash).
        rmSync(path, { force: true });
      }
    } catch (error) {
      if (error instanceof FileError) throw error;
      throw new FileError({ path, message: 'the output folder cannot be locked', cause: error });
    } finally {
      rmSync(temp, { force: true });
    }
    // Unreachable: the loop returns or throws.
    throw new FileError({ path, message: 'the output folder cannot be locked' });
  }

  /** Removes the lock (once; later calls do nothing), only while it is still this one. */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    held.delete(this.path);
    if (readOwner(this.path)?.token === this.#token) rmSync(this.path, { force: true });
  }
}
