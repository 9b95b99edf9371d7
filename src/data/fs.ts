/**
 * File I/O for the data layer: JSON reading with precise error positions, atomic JSON writes, and safe
 * `<id>.json` paths. The only module (with the loaders and writers built on it) that touches the disk.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import {
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  rename,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import { FileError, ValidationError } from '../errors.js';
import { parseOptions, validateTaskId } from './validate.js';

/** A JSON file's parsed value together with its text (the text is needed to find duplicate keys). */
export interface JsonFile {
  /** The parsed value. */
  readonly value: unknown;
  /** The file's text (without a leading byte-order mark). */
  readonly text: string;
}

/**
 * Reads and parses a JSON file. Throws {@link FileError} when it is missing, unreadable or not valid
 * JSON; the message then says which, and for bad JSON gives the line, column and position of the error.
 */
export async function readJsonFile(path: string): Promise<unknown> {
  return (await readJsonFileWithText(path)).value;
}

/** Like {@link readJsonFile}, but also returns the file's text. */
export async function readJsonFileWithText(path: string): Promise<JsonFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new FileError({ path, message: describeFsError(error, 'read'), cause: error });
  }
  // Editors on Windows like to add a BOM, which JSON.parse rejects.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  return { value: parseJsonText(text, path), text };
}

/**
 * Parses JSON text; on a syntax error throws {@link FileError} naming `path` and the line, column and
 * position of the first error (V8's own message often lacks the position).
 */
export function parseJsonText(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const found = locateJsonError(text);
    const message =
      found === undefined
        ? `invalid JSON: ${(error as Error).message.slice(0, 200)}`
        : `invalid JSON at line ${found.line}, column ${found.column} (position ${found.offset}): ${found.message}`;
    throw new FileError({ path, message, cause: error });
  }
}

/** Options of {@link writeJsonAtomic}. */
export const WriteJsonOptionsSchema = z.object({
  /**
   * Indent nested values, keeping each array of numbers (a grid row) on one line.
   * @default false
   */
  pretty: z.boolean().default(false),
});
/** Options of {@link writeJsonAtomic}. */
export type WriteJsonOptions = z.input<typeof WriteJsonOptionsSchema>;

/**
 * Writes `value` as JSON to `path` atomically: the text goes to a temporary file in the same folder
 * which is then renamed over `path` (over the file it links to, when `path` is a symbolic link: the link
 * stays), so readers never see a half-written file. Creates parent folders.
 * Throws {@link FileError} when the write fails (no temporary file is left behind).
 */
export async function writeJsonAtomic(
  path: string,
  value: unknown,
  options?: WriteJsonOptions,
): Promise<void> {
  const o = parseOptions(WriteJsonOptionsSchema, options, 'writeJsonAtomic');
  const text = stringifyJson(value, o.pretty);
  if (text === undefined) throw new FileError({ path, message: 'value cannot be written as JSON' });
  await writeTextAtomic(path, `${text}\n`);
}

/**
 * Writes `text` to `path` atomically (a temporary file in the same folder, then renamed over the target),
 * creating parent folders; through a symbolic link, its target is written.
 * @throws {FileError} when the file cannot be written (no temporary file is left behind).
 * @internal
 */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  // A link is written through, not replaced by a file (the rename below would replace it).
  const target = await writeTarget(path);
  const dir = dirname(target);
  // Same folder as the target: rename is only atomic within one file system.
  const temp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await makeDirs(dir);
    await writeFile(temp, text, 'utf8');
    await rename(temp, target);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw new FileError({ path, message: describeFsError(error, 'write'), cause: error });
  }
}

/** One `<id>.json` file of a folder. @internal */
export interface IdFile {
  readonly id: string;
  readonly path: string;
}

/**
 * The `<id>.json` files of a folder listing (see {@link listJsonFiles}), each with its id. `abc.json` and
 * `abc.JSON` name the same task: the second is handed to `duplicate` as a {@link ValidationError} instead of
 * one silently replacing the other.
 * @internal
 */
export function filesById(
  dir: string,
  names: readonly string[],
  duplicate: (error: ValidationError) => void,
): IdFile[] {
  const files: IdFile[] = [];
  const byId = new Map<string, string>();
  for (const name of names) {
    const id = name.slice(0, -'.json'.length);
    const path = join(dir, name);
    const first = byId.get(id);
    if (first !== undefined) {
      duplicate(
        new ValidationError({
          taskId: id,
          source: path,
          issues: [{ path: '', message: `duplicate task id "${id}": also given by ${first}` }],
        }),
      );
      continue;
    }
    byId.set(id, name);
    files.push({ id, path });
  }
  return files;
}

/**
 * `mkdir -p`: creates `dir` and its missing parents. Not `mkdir(dir, { recursive: true })`: Node's retries
 * forever where a parent exists but refuses new entries (`/proc/x` spins at 100 % CPU).
 * @internal
 */
export async function makeDirs(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let at = resolve(dir); ; at = dirname(at)) {
    const found = await stat(at).then(
      (s) => s,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return undefined;
        throw error;
      },
    );
    if (found !== undefined) {
      if (at === resolve(dir) && !found.isDirectory()) throw notAFolder(at);
      break; // an existing non-folder higher up makes the first mkdir below fail with ENOTDIR
    }
    if (dirname(at) === at) break;
    missing.push(at);
  }
  for (const d of missing.reverse()) {
    await mkdir(d).catch(async (error: NodeJS.ErrnoException) => {
      // Made meanwhile by another writer: fine if it is a folder.
      if (error.code !== 'EEXIST' || !(await stat(d)).isDirectory()) throw error;
    });
  }
}

function notAFolder(path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${path}'`), { code: 'ENOTDIR', path });
}

/**
 * The file a write to `path` replaces: symbolic links followed (also to a file not there yet), in a folder whose
 * own links are resolved (a link's relative target counts from the real folder, as the kernel reads it).
 * @throws {FileError} on a loop of links.
 * @internal
 */
export async function writeTarget(path: string): Promise<string> {
  const real = async (p: string) => join(await realpath(dirname(p)).catch(() => dirname(p)), basename(p));
  let current = await real(resolve(path));
  for (let hops = 0; hops < 40; hops++) {
    let link: string;
    try {
      if (!(await lstat(current)).isSymbolicLink()) return current;
      link = await readlink(current);
    } catch {
      return current; // missing (a new file), or unreadable: the write reports it
    }
    current = await real(resolve(dirname(current), link));
  }
  throw new FileError({ path, message: 'too many levels of symbolic links (a loop?)' });
}

/**
 * The path of task `taskId`'s file in `dir` (`<dir>/<id>.json`). Throws {@link ValidationError} naming
 * the id when it is not a safe single path segment (`../x`, `a/b`, `..`, `''`), so the result is always
 * inside `dir`.
 */
export function taskFilePath(dir: string, taskId: string): string {
  const id = validateTaskId(taskId);
  const root = resolve(dir);
  const path = resolve(root, `${id}.json`);
  const rel = relative(root, path);
  // Belt and braces: TaskIdSchema already forbids separators and leading dots.
  if (rel === '' || isAbsolute(rel) || rel.startsWith('..') || rel.includes(sep) || rel.includes('/')) {
    throw new ValidationError({
      taskId: id,
      issues: [{ path: '', message: `task id "${id}" would make a file outside ${root}` }],
    });
  }
  return path;
}

/**
 * The top-level keys of the JSON object in `text` (which must be valid JSON), in the file's order, and those
 * that occur more than once. `JSON.parse` silently keeps the last of repeated keys, and the object it builds
 * lists all-digit keys first (a JavaScript rule): the text has both facts.
 */
export function topLevelKeys(text: string): { keys: string[]; duplicates: string[] } {
  let i = skipWs(text, 0);
  if (text[i] !== '{') return { keys: [], duplicates: [] };
  const seen = new Set<string>();
  const dups = new Set<string>();
  i = skipWs(text, i + 1);
  while (i < text.length && text[i] !== '}') {
    const end = skipString(text, i);
    const raw = text.slice(i, end);
    const key = raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
    if (seen.has(key)) dups.add(key);
    seen.add(key);
    i = skipWs(text, end);
    i = skipValue(text, skipWs(text, i + 1)); // past ':' and the value
    i = skipWs(text, i);
    if (text[i] === ',') i = skipWs(text, i + 1);
  }
  return { keys: [...seen], duplicates: [...dups] };
}

/**
 * The `*.json` file names of a folder (files or links to them), sorted. Hidden ones are left out: macOS writes
 * `._<name>.json` companions onto non-Apple disks, and they are no task files.
 * @throws {FileError} when the folder cannot be read.
 */
export async function listJsonFiles(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true }))
      .filter((d) => (d.isFile() || d.isSymbolicLink()) && /\.json$/i.test(d.name) && !d.name.startsWith('.'))
      .map((d) => d.name)
      .sort();
  } catch (error) {
    throw new FileError({ path: dir, message: describeFsError(error, 'read', 'folder'), cause: error });
  }
}

/**
 * Maps `items` through async `fn` with at most `limit` calls in flight, keeping order. Reading many small
 * files one by one is slow, and all at once can exhaust file handles.
 * @internal
 */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * A human description of a file-system error; `what` is what the path names (for a missing or wrong-kind path).
 * @internal
 */
export function describeFsError(
  error: unknown,
  action: 'read' | 'write',
  what: 'file' | 'folder' = 'file',
): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return action === 'read' ? `${what} not found` : 'folder not found';
    case 'EISDIR':
      return 'is a folder, not a file';
    case 'ENOTDIR':
      return what === 'folder' ? 'is not a folder' : 'a parent of the path is not a folder';
    case 'EEXIST':
      // mkdir of a folder where a file stands.
      return 'a file is in the way: the path or a parent of it is a file, not a folder';
    case 'EACCES':
    case 'EPERM':
      return `permission denied (cannot ${action})`;
    case 'EROFS':
      return `read-only file system (cannot ${action})`;
    case 'ENOSPC':
      return 'no space left on the device';
    default:
      return `cannot ${action} (${code ?? 'error'}: ${(error as Error | undefined)?.message ?? String(error)})`;
  }
}

// ---------------------------------------------------------------------------------------------------------
// JSON text helpers

function stringifyJson(value: unknown, pretty: boolean): string | undefined {
  if (!pretty) return JSON.stringify(value);
  const format = (v: unknown, indent: string): string | undefined => {
    if (v === null || typeof v !== 'object') return JSON.stringify(v);
    if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return JSON.stringify(v);
    const inner = `${indent}  `;
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      // Rows of a grid (arrays of scalars) stay on one line: a grid then reads as a picture.
      if (v.every((x) => x === null || typeof x !== 'object')) return JSON.stringify(v);
      const parts = v.map((x) => format(x, inner) ?? 'null');
      return `[\n${inner}${parts.join(`,\n${inner}`)}\n${indent}]`;
    }
    const parts: string[] = [];
    for (const [key, x] of Object.entries(v)) {
      const text = format(x, inner);
      if (text !== undefined) parts.push(`${JSON.stringify(key)}: ${text}`);
    }
    return parts.length === 0 ? '{}' : `{\n${inner}${parts.join(`,\n${inner}`)}\n${indent}}`;
  };
  return format(value, '');
}

function skipWs(text: string, i: number): number {
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    i++;
  }
  return i;
}

/** Index just past the string starting at `i` (which is a `"`). */
function skipString(text: string, i: number): number {
  i++;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x5c) i += 2;
    else if (c === 0x22) return i + 1;
    else i++;
  }
  return i;
}

/** Index just past the (valid) JSON value starting at `i`. */
function skipValue(text: string, i: number): number {
  let depth = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === '"') {
      i = skipString(text, i);
      if (depth === 0) return i;
      continue;
    }
    if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') {
      if (depth === 0) return i;
      depth--;
      if (depth === 0) return i + 1;
    } else if (depth === 0 && ch === ',') return i;
    i++;
  }
  return i;
}

interface JsonErrorLocation {
  offset: number;
  line: number;
  column: number;
  message: string;
}

class JsonSyntaxError {
  constructor(
    readonly offset: number,
    readonly message: string,
  ) {}
}

/** Finds the first syntax error in `text` (a small validating parser), or undefined when none is found. */
function locateJsonError(text: string): JsonErrorLocation | undefined {
  let i = 0;
  const fail = (message: string, at = i): never => {
    throw new JsonSyntaxError(at, message);
  };
  const unexpected = (): never =>
    i >= text.length
      ? fail('unexpected end of input')
      : fail(`unexpected character ${JSON.stringify(text[i])}`);
  const ws = (): void => {
    i = skipWs(text, i);
  };
  const str = (): void => {
    const start = i;
    i++;
    for (;;) {
      if (i >= text.length) fail('unterminated string', start);
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fail('control character in string (escape it)');
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail('bad \\u escape');
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else fail('bad escape in string');
      } else i++;
    }
  };
  const num = (): void => {
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (m === null || m[0] === '' || m[0] === '-') unexpected();
    i += m![0].length;
  };
  const value = (): void => {
    ws();
    const ch = text[i];
    if (ch === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"')
          fail(text[i] === '}' ? 'trailing comma in object' : 'expected a "quoted" property name');
        str();
        ws();
        if (text[i] !== ':') fail('expected ":" after property name');
        i++;
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          return;
        } else if (i >= text.length) unexpected();
        else fail('expected "," or "}" after property value');
      }
    } else if (ch === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] === ']') fail('trailing comma in array');
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') {
          i++;
          return;
        } else if (i >= text.length) unexpected();
        else fail('expected "," or "]" after array element');
      }
    } else if (ch === '"') str();
    else if (ch === '-' || (ch !== undefined && ch >= '0' && ch <= '9')) num();
    else {
      for (const word of ['true', 'false', 'null']) {
        if (text.startsWith(word, i)) {
          i += word.length;
          return;
        }
      }
      unexpected();
    }
  };
  try {
    value();
    ws();
    if (i < text.length) fail('unexpected content after the JSON value');
    return undefined;
  } catch (error) {
    if (!(error instanceof JsonSyntaxError)) return undefined; // e.g. too deeply nested to walk
    const before = text.slice(0, error.offset);
    const line = before.split('\n').length;
    const column = error.offset - (before.lastIndexOf('\n') + 1) + 1;
    return { offset: error.offset, line, column, message: error.message };
  }
}
