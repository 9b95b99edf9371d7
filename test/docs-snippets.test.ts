/**
 * Type-checks every ```ts / ```typescript block of the docs (README.md, docs/*.md, examples/README.md,
 * bench/README.md) the way a strict consumer would compile it: `import … from 'arc-ttft'`, module nodenext,
 * top-level await. Nothing is run. 'arc-ttft' maps to src/index.ts, so the check needs no build and never
 * sees a stale dist/.
 *
 * Each block is its own module. Two HTML comments, placed right before a block (blank lines between are
 * fine), adjust that:
 * - `<!-- snippet: skip -->`: not checked. Only for blocks that are not code (a type sketch, pseudo-code).
 * - `<!-- snippet: prelude … -->`: the comment's lines are prepended to the block, hidden from readers.
 *   Use it to declare what a fragment takes from its context, e.g.
 *   `import type { Task } from 'arc-ttft'; declare const task: Task;`
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

const DOCS = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
  'examples/README.md',
  'bench/README.md',
];

/** Where the in-memory snippet files live: inside the repo, so package.json's "type": "module" applies. */
const SNIPPET_DIR = join(ROOT, '.doc-snippets');

/**
 * `strict`, as most consumers compile. The opt-in flags of test/fixtures/consumer/tsconfig.json
 * (noUncheckedIndexedAccess, exactOptionalPropertyTypes, noUnusedLocals) are left out: they are checked
 * against the package there, and here they would only add `!`s to the docs.
 */
const OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  // A block without imports is still a module: its own scope, and top-level await.
  moduleDetection: ts.ModuleDetectionKind.Force,
  lib: ['lib.es2023.d.ts'],
  types: ['node'],
  typeRoots: [join(ROOT, 'node_modules/@types')],
  strict: true,
  skipLibCheck: true,
  noEmit: true,
  paths: { 'arc-ttft': [join(ROOT, 'src/index.ts')] },
};

interface Snippet {
  /** `docs/engine.md:15`: the doc and the line of the opening fence. */
  readonly where: string;
  readonly fileName: string;
  readonly text: string;
  /** The doc line (1-based) of each line of `text`. */
  readonly lines: readonly number[];
  /** Columns the doc indents the block by. */
  readonly indent: number;
  readonly skip: boolean;
}

const FENCE = /^(\s*)(`{3,}|~{3,})\s*(\S*)\s*$/;
const MARKER = /^<!--\s*snippet:\s*(\w+)([\s\S]*?)-->$/;

/** The snippet comment ending right above line `at` (0-based), blank lines allowed between. */
function markerAbove(
  lines: readonly string[],
  at: number,
): { kind: string; body: string; line: number } | null {
  let end = at - 1;
  while (end >= 0 && lines[end]!.trim() === '') end--;
  if (end < 0 || !lines[end]!.trim().endsWith('-->')) return null;
  let start = end;
  while (start >= 0 && !lines[start]!.includes('<!--')) start--;
  if (start < 0) return null;
  const match = MARKER.exec(
    lines
      .slice(start, end + 1)
      .join('\n')
      .trim(),
  );
  if (match === null) return null;
  return { kind: match[1]!, body: match[2]!, line: start };
}

function extractSnippets(doc: string): Snippet[] {
  const lines = readFileSync(join(ROOT, doc), 'utf8').split('\n');
  const snippets: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!);
    if (open === null) continue;
    const [, indent, fence, lang] = open;
    let close = i + 1;
    // Closed by the same fence character, at least as long, with no info string.
    while (close < lines.length) {
      const m = FENCE.exec(lines[close]!);
      if (m !== null && m[2]![0] === fence![0] && m[2]!.length >= fence!.length && m[3] === '') break;
      close++;
    }
    if (lang === 'ts' || lang === 'typescript') {
      const where = `${doc}:${i + 1}`;
      const marker = markerAbove(lines, i);
      if (marker !== null && marker.kind !== 'skip' && marker.kind !== 'prelude') {
        throw new Error(`${where}: unknown marker <!-- snippet: ${marker.kind} --> (skip or prelude)`);
      }
      // Lines lose the block's indent (a block in a list item), so diagnostics' columns are `indent` off.
      const dedent = (line: string) => line.slice(Math.min(indent!.length, line.search(/\S|$/)));
      const text: string[] = [];
      const docLines: number[] = [];
      if (marker?.kind === 'prelude') {
        // The body starts on the marker's line, after `snippet: prelude`.
        marker.body.split('\n').forEach((line, k) => {
          text.push(dedent(line));
          docLines.push(marker.line + k + 1);
        });
      }
      for (let k = i + 1; k < close; k++) {
        text.push(dedent(lines[k]!));
        docLines.push(k + 1);
      }
      snippets.push({
        where,
        fileName: join(SNIPPET_DIR, `${doc.replace(/\W/g, '_')}_${i + 1}.ts`),
        text: text.join('\n'),
        lines: docLines,
        indent: indent!.length,
        skip: marker?.kind === 'skip',
      });
    }
    i = close;
  }
  return snippets;
}

/** Diagnostics of each snippet, as `doc:line:col TSnnnn message` lines; one program for all of them. */
function checkSnippets(snippets: readonly Snippet[]): Map<Snippet, string[]> {
  const byName = new Map(snippets.map((s) => [s.fileName, s]));
  const host = ts.createCompilerHost(OPTIONS, true);
  const { getSourceFile, fileExists, readFile } = host;
  host.getCurrentDirectory = () => ROOT;
  host.fileExists = (name) => byName.has(name) || fileExists.call(host, name);
  host.readFile = (name) => byName.get(name)?.text ?? readFile.call(host, name);
  host.getSourceFile = (name, language, ...rest) => {
    const snippet = byName.get(name);
    if (snippet === undefined) return getSourceFile.call(host, name, language, ...rest);
    return ts.createSourceFile(name, snippet.text, language, true);
  };
  const program = ts.createProgram([...byName.keys()], OPTIONS, host);
  const global = program.getGlobalDiagnostics();
  if (global.length > 0) throw new Error(ts.formatDiagnostics(global, host));
  const result = new Map<Snippet, string[]>();
  for (const snippet of snippets) {
    const file = program.getSourceFile(snippet.fileName)!;
    const diagnostics = [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)];
    result.set(
      snippet,
      diagnostics.map((d) => {
        const message = ts.flattenDiagnosticMessageText(d.messageText, '\n    ');
        if (d.file === undefined || d.start === undefined) return `TS${d.code} ${message}`;
        const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
        const where = `${snippet.where.split(':')[0]}:${snippet.lines[line]}:${character + 1 + snippet.indent}`;
        return `${where} TS${d.code} ${message}`;
      }),
    );
  }
  return result;
}

const snippets = DOCS.flatMap(extractSnippets);
let diagnostics: Map<Snippet, string[]>;

beforeAll(() => {
  diagnostics = checkSnippets(snippets.filter((s) => !s.skip));
});

describe('docs snippets type-check against the public API', () => {
  it('finds the README quick start', () => {
    expect(snippets.map((s) => s.where)).toContain('README.md:33');
  });

  for (const snippet of snippets) {
    it.skipIf(snippet.skip)(snippet.where, () => {
      const found = diagnostics.get(snippet)!;
      if (found.length > 0) expect.fail(`${snippet.where}: the block does not compile:\n${found.join('\n')}`);
    });
  }
});
