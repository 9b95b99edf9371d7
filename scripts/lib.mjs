// Shared helpers for the repo scripts (plain Node, no dependencies: they run before `npm ci`).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Runs a command in the repo root, streaming its output; exits the script when it fails. */
export function run(cmd, args, { env = {}, allowFail = false } = {}) {
  console.log(`\n$ ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0 && !allowFail) {
    console.error(`\n${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
  return r.status ?? 1;
}

/** `npm ci` when node_modules is missing or older than package-lock.json. */
export function ensureNodeModules() {
  const lock = join(ROOT, 'package-lock.json');
  const stamp = join(ROOT, 'node_modules/.package-lock.json');
  if (existsSync(stamp) && statSync(stamp).mtimeMs >= statSync(lock).mtimeMs) return;
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

/** Builds dist/ with tsup. */
export function build() {
  run('npx', ['tsup']);
}

/** Creates (or reuses) the project's Python venv through the built library; returns its python. */
export async function ensurePython({ extras = [] } = {}) {
  const { ensurePythonEnv } = await import(join(ROOT, 'dist/index.js'));
  const env = await ensurePythonEnv({ extras }, (line) => console.log(`  ${line}`));
  console.log(`python: ${env.python} (${env.created ? 'created' : 'reused'})`);
  return env.python;
}

export function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}
