// The HTML report: rendered from the bundled sample tasks with clearly synthetic task records (no model
// ran), checked as text in Node, then opened in headless Chromium to check what it actually shows.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Browser, chromium, type Locator } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTasks } from '../src/data/load.js';
import { filledGrid } from '../src/grid.js';
import { ARC_PALETTE, type ReportInput, renderReport, writeReport } from '../src/report/html.js';
import type { Grid, Submission, TaskSet } from '../src/schemas.js';
import { scoreSubmission } from '../src/score.js';
import type { TaskRecord } from '../src/ttft/records.js';
import { ROOT } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const HAS_CHROMIUM = existsSync(CHROMIUM);
const OUT = join(ROOT, '.cache/test-output');
const XSS = '<script>alert(1)</script>';

/** A record with the fields every synthetic record shares; `over` sets the rest. */
function record(
  taskId: string,
  over: Partial<TaskRecord> & Pick<TaskRecord, 'status' | 'attempts'>,
): TaskRecord {
  return {
    type: 'task',
    taskId,
    fallback: [],
    keptTrain: [],
    droppedTrain: [],
    settings: { steps: 8, augmentations: 8 },
    seconds: 12.5,
    finishedAt: '2025-01-01T00:00:00.000Z',
    ...over,
  };
}

/** Changes one cell, so the grid keeps its shape but is wrong. */
function perturb(grid: Grid): Grid {
  return grid.map((row, r) => row.map((v, c) => (r === 0 && c === 0 ? (v + 1) % 10 : v)));
}

function expected(tasks: TaskSet, id: string): Grid {
  const grid = tasks[id]?.test[0]?.output;
  if (grid === undefined) throw new Error(`sample task ${id} has no known test output`);
  return grid;
}

/** Six sample tasks, synthetic records covering every status, and the real score of their attempts. */
async function buildInput(): Promise<ReportInput> {
  const { tasks } = await loadTasks(join(ROOT, 'data/sample/challenges.json'), {
    solutions: join(ROOT, 'data/sample/solutions.json'),
  });
  const ids = Object.keys(tasks);
  expect(ids).toHaveLength(6);
  const [solvedA, wrong, failed, tooLong, timedOut, solvedB] = ids as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const solutionA = expected(tasks, solvedA);
  const train = (steps: number) => ({
    steps,
    losses: Array.from({ length: steps }, (_, i) => (i === 3 ? null : 1.2 / (i + 1))),
    tokens: 4096,
    samples: steps * 2,
    seconds: 9.25,
  });
  const fallbackOf = (id: string) => {
    const input = tasks[id]!.test[0]!.input;
    return [{ attempt_1: input, attempt_2: input }];
  };
  const records: TaskRecord[] = [
    record(solvedA, {
      status: 'done',
      // Attempt 2 is right: the ✓ must follow the grid, not the position.
      attempts: [{ attempt_1: perturb(solutionA), attempt_2: solutionA }],
      keptTrain: [0, 1, 2],
      train: train(8),
      predict: {
        tests: [
          {
            testIndex: 0,
            candidates: [
              { grid: perturb(solutionA), votes: 5, meanLogProb: -0.12 },
              { grid: solutionA, votes: 3, meanLogProb: -0.2 },
              { grid: filledGrid(2, 2, 4), votes: 1, meanLogProb: null },
            ],
            failures: 1,
            views: 10,
          },
        ],
        generatedTokens: 640,
        seconds: 2.5,
      },
    }),
    record(wrong, {
      status: 'done',
      attempts: [{ attempt_1: filledGrid(5, 4, 3), attempt_2: filledGrid(3, 3, 8) }],
      keptTrain: [0, 1, 2, 3],
      train: train(8),
      predict: { tests: [], generatedTokens: 320, seconds: 1.5 },
    }),
    record(failed, {
      status: 'failed',
      attempts: fallbackOf(failed),
      fallback: [0],
      keptTrain: [0, 1, 2],
      error: { type: 'BridgeError', message: `boom ${XSS} & "quotes"`, traceback: `Traceback:\n  ${XSS}` },
    }),
    record(tooLong, {
      status: 'too_long',
      attempts: fallbackOf(tooLong),
      fallback: [0],
      droppedTrain: [0, 1, 2],
      error: { type: 'TaskTooLongError', message: 'does not fit maxSeqLen 512 even with one train pair' },
    }),
    record(timedOut, {
      status: 'timed_out',
      attempts: fallbackOf(timedOut),
      fallback: [0],
      keptTrain: [0, 2],
      droppedTrain: [1],
      train: train(3),
      error: { type: 'TimeoutError', message: 'task ran past its 60 s limit' },
    }),
    record(solvedB, {
      status: 'done',
      attempts: [{ attempt_1: expected(tasks, solvedB), attempt_2: filledGrid(1, 1, 0) }],
      keptTrain: [0, 1, 2, 3],
      train: train(1),
    }),
    // A task that failed to load: not in the task set.
    record('bad-task', {
      status: 'invalid',
      attempts: [],
      error: { type: 'ValidationError', message: 'train[0].input[2]: ragged grid' },
    }),
  ];
  const submission: Submission = {};
  for (const r of records) if (r.attempts.length > 0) submission[r.taskId] = [...r.attempts];
  const solutions = Object.fromEntries(ids.map((id) => [id, [expected(tasks, id)]]));
  return {
    title: 'Sample run <synthetic>',
    tasks,
    records,
    score: scoreSubmission(submission, solutions),
    run: {
      mode: 'single-task',
      model: 'embedded',
      startedAt: '2025-01-01T00:00:00.000Z',
      seconds: 95,
      options: { steps: 8, augmentations: 8, note: '</style><b>x</b>' },
    },
  };
}

/** Every grid the report should draw for a task, in page order. */
function gridsOf(input: ReportInput, id: string, candidates = 3): Grid[] {
  const task = input.tasks[id]!;
  const rec = input.records.find((r) => r.taskId === id)!;
  const out: Grid[] = [];
  for (const pair of task.train) out.push(pair.input, pair.output);
  task.test.forEach((test, i) => {
    out.push(test.input);
    const a = rec.attempts[i];
    if (a !== undefined) out.push(a.attempt_1, a.attempt_2);
    if (test.output !== undefined) out.push(test.output);
    const predicted = rec.predict?.tests.find((t) => t.testIndex === i);
    for (const c of predicted?.candidates.slice(0, candidates) ?? []) out.push(c.grid);
  });
  return out;
}

/** The page's globals the checks use, typed by hand: tsconfig has no DOM lib (the code runs in Node). */
interface PageGlobals {
  document: {
    querySelector(selector: string): object | null;
    body: { getBoundingClientRect(): { height: number } };
  };
  getComputedStyle(element: object): { fill: string; display: string };
  requestAnimationFrame(callback: () => void): number;
}

/** The text a locator shows as rendered (unlike textContent, layout-aware: hidden text is left out). */
function shownText(locator: Locator): Promise<string> {
  // biome-ignore lint/performance/useDomNodeTextContent: the rendered text is what the test checks
  return locator.innerText();
}

function cellCount(grids: readonly Grid[]): number {
  return grids.reduce((n, g) => n + g.length * g[0]!.length, 0);
}

describe('renderReport (text)', () => {
  let input: ReportInput;
  let html: string;
  beforeAll(async () => {
    input = await buildInput();
    html = renderReport(input);
  });

  it('is one self-contained page: no script, no external reference', () => {
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/\b(?:src|srcset)=/i);
    expect(html).not.toMatch(/url\(/i);
    // Links only point inside the page.
    for (const m of html.matchAll(/href="([^"]*)"/g)) expect(m[1]!.startsWith('#')).toBe(true);
  });

  it('escapes every text from the input', () => {
    expect(html).toContain('boom &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;');
    expect(html).toContain('Sample run &lt;synthetic&gt;');
    expect(html).toContain('&lt;/style&gt;&lt;b&gt;x&lt;/b&gt;');
    expect(html).not.toContain('<b>x</b>');
  });

  it('has a section per task, the orphan record last', () => {
    const sections = [...html.matchAll(/<section class="task" id="([^"]*)"/g)].map((m) => m[1]);
    expect(sections).toEqual([...Object.keys(input.tasks), 'bad-task'].map((id) => `task-${id}`));
  });

  it('draws each grid cell once, as runs whose data-cells add up', () => {
    const id = Object.keys(input.tasks)[0]!;
    const start = html.indexOf(`<section class="task" id="task-${id}"`);
    const section = html.slice(start, html.indexOf('</section>', start));
    const grids = gridsOf(input, id);
    expect([...section.matchAll(/<svg class="g"/g)]).toHaveLength(grids.length);
    const cells = [...section.matchAll(/data-cells="(\d+)"/g)].reduce((n, m) => n + Number(m[1]), 0);
    expect(cells).toBe(cellCount(grids));
  });

  it('is deterministic and does not change its input', () => {
    const before = JSON.stringify(input);
    expect(renderReport(input)).toBe(html);
    expect(JSON.stringify(input)).toBe(before);
  });

  it('takes every line of results.jsonl as records: the run and whole-set lines are skipped', () => {
    const lines = [
      { type: 'run', version: '0', fingerprint: 'x', mode: 'single-task', ids: [] },
      ...input.records.slice(0, 2),
      { type: 'whole_set', adapterPath: '/tmp/a', ids: 'x' },
      ...input.records.slice(2),
    ] as unknown as TaskRecord[];
    expect(renderReport({ ...input, records: lines })).toBe(html);
  });

  it('shows tasks without a record, and no metrics without a score', () => {
    const bare = renderReport({ tasks: input.tasks, records: [] });
    expect([...bare.matchAll(/data-badge="pending"/g)].length).toBeGreaterThanOrEqual(6);
    expect(bare).toContain('No score');
    expect(bare).toContain('<title>arc-ttft run report</title>');
    expect(renderReport({ tasks: {}, records: [] })).toContain('No tasks.');
  });

  it('hides candidates with candidates: 0 and draws an invalid grid as a note', () => {
    expect(renderReport(input, { candidates: 0 })).not.toContain('<h3>Candidates');
    const broken = structuredClone(input.records[1]!) as TaskRecord;
    const bad = {
      ...broken,
      attempts: [{ attempt_1: [[1, 2], [3]], attempt_2: [[12]] }],
    } as unknown as TaskRecord;
    const text = renderReport({ tasks: input.tasks, records: [bad] });
    expect([...text.matchAll(/not a valid grid/g)]).toHaveLength(2);
    expect(() => renderReport(input, { candidates: -1 })).toThrow(/candidates/);
  });

  it('writeReport writes the same text atomically', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'arc-ttft-report-'));
    try {
      const path = join(dir, 'nested/report.html');
      await writeReport(path, input);
      expect(await readFile(path, 'utf8')).toBe(html);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!HAS_CHROMIUM)(
  `report in headless Chromium (skipped when ${CHROMIUM} is missing: run node scripts/ensure-chromium.mjs)`,
  () => {
    let input: ReportInput;
    let browser: Browser;
    let url: string;
    beforeAll(async () => {
      input = await buildInput();
      await mkdir(OUT, { recursive: true });
      const file = join(OUT, 'report.html');
      await writeFile(file, renderReport(input), 'utf8');
      url = pathToFileURL(file).href;
      // launch() gives every browser a fresh temporary profile (user-data-dir), removed on close.
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--no-first-run',
        ],
      });
    });
    afterAll(async () => {
      await browser?.close();
    });

    it('shows the grids, metrics, statuses and escaped errors', async () => {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const dialogs: string[] = [];
      const errors: string[] = [];
      const requests: string[] = [];
      page.on('dialog', (dialog) => {
        dialogs.push(dialog.message());
        void dialog.dismiss();
      });
      page.on('pageerror', (error) => errors.push(error.message));
      page.on('request', (request) => {
        if (!request.url().startsWith('file:')) requests.push(request.url());
      });
      await page.goto(url, { waitUntil: 'load' });

      // Every grid of a known task, read back from the drawn paths, equals its data.
      const id = Object.keys(input.tasks)[0]!;
      const drawn = await page.locator(`section[data-task="${id}"] svg.g`).evaluateAll((svgs) =>
        svgs.map((svg) => {
          const rows = Number(svg.getAttribute('data-rows'));
          const cols = Number(svg.getAttribute('data-cols'));
          const grid: (number | null)[][] = Array.from({ length: rows }, () => new Array(cols).fill(null));
          let cells = 0;
          for (const path of svg.querySelectorAll('path[data-c]')) {
            const colour = Number(path.getAttribute('data-c'));
            for (const m of (path.getAttribute('d') ?? '').matchAll(/M(\d+) (\d+)h(\d+)v1h-\d+z/g)) {
              const [x, y, n] = [Number(m[1]), Number(m[2]), Number(m[3])];
              for (let k = 0; k < n; k++) {
                if (grid[y]![x + k] !== null) return { grid, cells: -1 }; // drawn twice
                grid[y]![x + k] = colour;
                cells++;
              }
            }
          }
          return { grid, cells };
        }),
      );
      const grids = gridsOf(input, id);
      expect(drawn.map((d) => d.grid)).toEqual(grids);
      expect(drawn.reduce((n, d) => n + d.cells, 0)).toBe(cellCount(grids));

      // The palette is ARC's: each colour class is filled with its colour.
      const fills = await page.evaluate(() =>
        Array.from({ length: 10 }, (_, k) => {
          const el = (globalThis as unknown as PageGlobals).document.querySelector(`path.c${k}`);
          return el === null ? null : (globalThis as unknown as PageGlobals).getComputedStyle(el).fill;
        }),
      );
      const rgb = (hex: string) =>
        `rgb(${[1, 3, 5].map((i) => Number.parseInt(hex.slice(i, i + 2), 16)).join(', ')})`;
      fills.forEach((fill, k) => {
        if (fill !== null) expect(fill).toBe(rgb(ARC_PALETTE[k]!));
      });
      expect(fills.filter((f) => f !== null).length).toBeGreaterThanOrEqual(5);

      // Metrics: the score and the metric rows.
      const score = input.score!;
      const scoreText = await shownText(page.locator('#metrics .score'));
      expect(scoreText).toContain(score.score.toFixed(4));
      expect(scoreText).toContain('over 6 tasks');
      const vote2 = await shownText(page.locator('#metrics tr[data-metric="vote2"]'));
      expect(vote2).toContain(`${(score.metrics.vote2 * 100).toFixed(1)}%`);
      expect(vote2).toContain('Kaggle pass@2');

      // The error text shows as text; nothing ran.
      const failedId = input.records.find((r) => r.status === 'failed')!.taskId;
      const errorText = await shownText(page.locator(`section[data-task="${failedId}"] pre.err`).first());
      expect(errorText).toContain(`boom ${XSS} & "quotes"`);
      expect(await page.locator('script').count()).toBe(0);
      expect(dialogs).toEqual([]);
      expect(errors).toEqual([]);
      expect(requests).toEqual([]);

      // Status badges: the summary counts and the sections agree with the records.
      const byStatus = new Map<string, number>();
      for (const r of input.records) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
      for (const [status, n] of byStatus) {
        expect(
          await page.locator(`#summary [data-status-count="${status}"]`).getAttribute('data-count'),
        ).toBe(String(n));
        expect(await page.locator(`section.task > header [data-badge="${status}"]`).count()).toBe(n);
      }

      // ✓ and ✗ marks: the first task's attempt 2 is right, attempt 1 wrong.
      const marks = await page
        .locator(`section[data-task="${id}"] figure.attempt figcaption`)
        .allInnerTexts();
      expect(marks).toHaveLength(2);
      expect(marks[0]).toContain('✗');
      expect(marks[1]).toContain('✓');

      // Sections use content-visibility: auto, so those outside the viewport are not painted; a viewport
      // as tall as the page paints them all (twice: their real heights replace the estimated ones).
      // Measured after two frames: the sections' painting (and real heights) comes a frame after a resize.
      const pageHeight = () =>
        page.evaluate(async () => {
          const g = globalThis as unknown as PageGlobals;
          for (let i = 0; i < 2; i++)
            await new Promise<void>((done) => g.requestAnimationFrame(() => done()));
          return Math.ceil(g.document.body.getBoundingClientRect().height);
        });
      for (let i = 0; i < 3; i++) await page.setViewportSize({ width: 1280, height: await pageHeight() });
      await page.screenshot({ path: join(OUT, 'report.png'), fullPage: true });
      await page.close();
    });

    it('filters tasks with the radio buttons (CSS only, no script)', async () => {
      const page = await browser.newPage({
        viewport: { width: 1280, height: 900 },
        javaScriptEnabled: false,
      });
      await page.goto(url, { waitUntil: 'load' });
      const shown = () =>
        page
          .locator('section.task')
          .evaluateAll(
            (els) =>
              els.filter(
                (el) => (globalThis as unknown as PageGlobals).getComputedStyle(el).display !== 'none',
              ).length,
          );
      expect(await shown()).toBe(7);
      await page.locator('label', { has: page.locator('#f-solved') }).click();
      expect(await shown()).toBe(2);
      await page.locator('label', { has: page.locator('#f-unsolved') }).click();
      expect(await shown()).toBe(4);
      await page.locator('label', { has: page.locator('#f-failed') }).click();
      expect(await shown()).toBe(4);
      expect(
        await page
          .locator('.index tbody tr')
          .evaluateAll(
            (rows) =>
              rows.filter(
                (r) => (globalThis as unknown as PageGlobals).getComputedStyle(r).display !== 'none',
              ).length,
          ),
      ).toBe(4);
      await page.locator('label', { has: page.locator('#f-all') }).click();
      expect(await shown()).toBe(7);
      await page.close();
    });
  },
);
