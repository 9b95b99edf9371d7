/** The output folder's lock (src/ttft/lock.ts): who may take it, and that a release removes only its own. */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileError } from '../src/index.js';
import { LOCK_FILE, OutputLock } from '../src/ttft/lock.js';

describe('OutputLock', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arc-ttft-lock-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, LOCK_FILE);

  it('is held once per folder, also within one process, and leaves nothing but itself', () => {
    const lock = OutputLock.take(dir);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ pid: process.pid, host: hostname() });
    expect(() => OutputLock.take(dir)).toThrow(FileError);
    lock.release();
    expect(existsSync(path)).toBe(false);
    lock.release(); // a second release does nothing
  });

  it('takes over a lock whose run is gone: a dead pid, our own pid from an earlier process, an unreadable file', async () => {
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.on('exit', resolve));
    for (const stale of [
      JSON.stringify({ pid: dead.pid, host: hostname(), startedAt: 'then' }),
      // Our pid, but not a lock this process holds: a restarted container reuses small pids.
      JSON.stringify({ pid: process.pid, host: hostname(), startedAt: 'then' }),
      '',
    ]) {
      writeFileSync(path, stale);
      const lock = OutputLock.take(dir);
      lock.release();
      expect(existsSync(path), stale).toBe(false);
    }
  });

  it("refuses another machine's lock (its pid cannot be checked)", () => {
    const owner = JSON.stringify({ pid: 1, host: `not-${hostname()}`, startedAt: 'then' });
    writeFileSync(path, owner);
    expect(() => OutputLock.take(dir)).toThrow(/another arc-ttft run \(pid 1 on not-/);
    expect(readFileSync(path, 'utf8')).toBe(owner);
    rmSync(path);
  });

  it('releases only its own lock: one that was replaced meanwhile stays', () => {
    const lock = OutputLock.take(dir);
    const other = JSON.stringify({ pid: 1, host: 'elsewhere', startedAt: 'then', token: 'theirs' });
    writeFileSync(path, other);
    lock.release();
    expect(readFileSync(path, 'utf8')).toBe(other);
    rmSync(path);
  });
});
