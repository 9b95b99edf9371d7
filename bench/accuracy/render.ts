/**
 * docs/results.md from a study's results JSON: the table, an honest reading generated from the numbers,
 * the machine, the model, every option, the task-list rule and what was tried. Pure: the same JSON
 * always gives the same text (`npx tsx bench/accuracy/run.ts --render docs/results.json` re-renders it).
 *
 * @module
 */
import type { RunMode } from '../../src/ttft/records.js';
import { mdTable } from '../markdown.js';
import type { ModeResult, StudyResults } from './study.js';

const pct = (x: number, digits = 1): string => `${(100 * x).toFixed(digits)}%`;
const pp = (x: number): string => `${(100 * x).toFixed(1)} pp`;

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds - 3600 * h) / 60);
  const s = Math.round(seconds - 3600 * h - 60 * m);
  if (h > 0) return `${h} h ${String(m).padStart(2, '0')} min`;
  if (m > 0) return `${m} min ${String(s).padStart(2, '0')} s`;
  return `${seconds.toFixed(1)} s`;
}

/** Two-sided exact sign test over the tasks where two modes differ (McNemar's exact test on tasks). */
export function signTest(better: number, worse: number): number {
  const n = better + worse;
  if (n === 0) return 1;
  const k = Math.min(better, worse);
  // log-space binomial coefficients keep n up to a few hundred exact enough.
  let logC = 0;
  let tail = 0;
  for (let i = 0; i <= k; i++) {
    if (i > 0) logC += Math.log(n - i + 1) - Math.log(i);
    tail += Math.exp(logC - n * Math.LN2);
  }
  return Math.min(1, 2 * tail);
}

/** Per-task comparison of two modes on vote_2: tasks where `a` scores higher, and where `b` does. */
export function compareModes(a: ModeResult, b: ModeResult): { better: number; worse: number; p: number } {
  let better = 0;
  let worse = 0;
  for (const [id, ta] of Object.entries(a.perTask)) {
    const tb = b.perTask[id];
    if (tb === undefined) continue;
    if (ta.vote2 > tb.vote2) better++;
    else if (ta.vote2 < tb.vote2) worse++;
  }
  return { better, worse, p: signTest(better, worse) };
}

/**
 * The reading of the numbers, sentence by sentence: which mode is best on vote_2 and by how much, whether
 * single-task TTFT beats the others (and, when not, that it does not), whether the difference is more
 * than chance on this many tasks, and the secondary metrics.
 */
export function findings(r: StudyResults): string[] {
  const out: string[] = [];
  const n = r.taskList.ids.length;
  const by = new Map<RunMode, ModeResult>(r.modes.map((m) => [m.mode, m]));
  if (r.model.info.embeddedStandIn) {
    out.push(
      'The model was the **random stand-in** for `embedded` (no pretrained model was present), so these numbers only show that the pipeline runs: they say nothing about the methods.',
    );
  }
  const summary = r.modes
    .map((m) => `${m.mode} ${pct(m.metrics.vote2)} (${m.solved.length} of ${n} tasks solved)`)
    .join(', ');
  out.push(`vote_2 (Kaggle pass@2) on ${n} tasks: ${summary}. One task is ${pct(1 / n)} here.`);

  const failedModes = r.modes.filter((m) => m.statusCounts.done < m.tasks);
  for (const m of failedModes) {
    const bad = Object.entries(m.statusCounts)
      .filter(([s, c]) => s !== 'done' && c > 0)
      .map(([s, c]) => `${c} ${s}`)
      .join(', ');
    out.push(
      `In mode ${m.mode}, not every task finished: ${bad}; those tasks got the fallback answer (a copy of the test input).`,
    );
  }

  const best = Math.max(...r.modes.map((m) => m.metrics.vote2));
  if (best === 0) {
    out.push('No mode solved any test output exactly, so vote_2 does not separate them.');
  } else {
    const top = r.modes.filter((m) => m.metrics.vote2 === best).map((m) => m.mode);
    out.push(
      top.length === 1 ? `Best on vote_2: ${top[0]}.` : `Tied for best on vote_2: ${top.join(' and ')}.`,
    );
  }

  const single = by.get('single-task');
  if (single !== undefined) {
    const others = r.modes.filter((m) => m.mode !== 'single-task');
    const parts: string[] = [];
    let beatsAll = others.length > 0;
    let significant = others.length > 0;
    for (const other of others) {
      const d = single.metrics.vote2 - other.metrics.vote2;
      const c = compareModes(single, other);
      if (d <= 0) beatsAll = false;
      if (c.p >= 0.05) significant = false;
      const rel =
        d > 0
          ? `beats ${other.mode} by ${pp(d)}`
          : d < 0
            ? `is ${pp(-d)} below ${other.mode}`
            : `equals ${other.mode}`;
      parts.push(
        `${rel} (better on ${c.better} task(s), worse on ${c.worse}; two-sided sign test p = ${c.p < 0.001 ? '< 0.001' : c.p.toFixed(3)})`,
      );
    }
    if (parts.length > 0) out.push(`Single-task TTFT ${parts.join('; it ')}.`);
    if (others.length > 0 && beatsAll) {
      out.push(
        significant
          ? 'Single-task TTFT beats every other mode here, and by more than chance on this many tasks.'
          : `Single-task TTFT scores highest here, but on ${n} tasks the difference is within what chance gives (p ≥ 0.05 for at least one comparison); it is a lead, not a demonstration.`,
      );
    } else if (others.length > 0) {
      out.push(
        '**Single-task TTFT does not beat the other modes in this study.** The settings used are listed under "What was tried"; other settings may change this.',
      );
    }
  }

  // Secondary metrics: where vote_2 is flat they still show whether the fine-tuned models get closer.
  for (const [key, name] of [
    ['correctSize', 'correct_size'],
    ['accuracy', 'accuracy'],
  ] as const) {
    const ranked = [...r.modes].sort((a, b) => b.metrics[key] - a.metrics[key]);
    out.push(`${name}: ${ranked.map((m) => `${m.mode} ${pct(m.metrics[key])}`).join(', ')}.`);
  }
  const ws = by.get('whole-set');
  if (single !== undefined && ws !== undefined) {
    out.push(
      single.trainSteps === ws.trainSteps
        ? `Both fine-tuning modes trained ${single.trainSteps.toLocaleString('en-US')} optimizer steps in all (single-task: ${r.options.steps} per task; whole-set: one adapter).`
        : `The fine-tuning modes trained different totals: single-task ${single.trainSteps}, whole-set ${ws.trainSteps} steps (a task that failed or did not fit trains no steps).`,
    );
  }
  return out;
}

/** docs/results.md. */
export function renderResultsMarkdown(r: StudyResults): string {
  const n = r.taskList.ids.length;
  const o = r.options;
  const L: string[] = [];
  L.push('# Accuracy study: single-task TTFT vs one whole-set adapter vs no fine-tuning');
  L.push('');
  L.push(
    `<!-- Generated by bench/accuracy/run.ts from ${o.results.replace(/\.md$/, '.json')}; do not edit by hand. -->`,
  );
  L.push('');
  L.push(
    `Generated by \`${r.command ?? 'npx tsx bench/accuracy/run.ts'}\` on ${r.finishedAt.slice(0, 10)} (arc-ttft ${r.version}). ` +
      "Every number below comes from the run folders' journals and submissions, scored with `src/score.ts`; nothing is typed in. " +
      `The three modes ran the same ${n} ARC-AGI-1 evaluation tasks with the same seed and options; the runs were given the tasks without their test outputs.`,
  );
  L.push('');
  L.push('## Result');
  L.push('');
  L.push(
    mdTable(
      [
        'mode',
        'vote_2 (pass@2)',
        'accuracy',
        'pass_n',
        'correct_size',
        'solved',
        'tasks done',
        'train steps',
        'wall time',
      ],
      r.modes.map((m) => [
        m.mode,
        pct(m.metrics.vote2),
        pct(m.metrics.accuracy),
        pct(m.metrics.passN),
        pct(m.metrics.correctSize),
        `${m.solved.length}/${m.tasks}`,
        `${m.statusCounts.done}/${m.tasks}`,
        m.trainSteps.toLocaleString('en-US'),
        duration(m.seconds),
      ]),
      [false, true, true, true, true, true, true, true, true],
    ),
  );
  L.push('');
  L.push(
    "Metrics are arc24's (`src/score.ts`): each is the mean over a task's test outputs, then the mean over tasks. " +
      "**vote_2**: attempt 1 or 2 exactly right, i.e. the Kaggle ARC Prize score (`scoreSubmission` of each mode's `submission.json` gives the same number). " +
      `**accuracy**: share of all ${o.augmentations} predictions per test output (one per view, unparsable ones counted wrong) exactly right. ` +
      '**pass_n**: any of them exactly right. **correct_size**: share of them with the right shape. ' +
      "**solved**: tasks with every test output right (vote_2 = 1). **wall time**: the sum of the tasks' times plus, for whole-set, the shared training, from the journals.",
  );
  L.push('');
  L.push('## What it shows');
  L.push('');
  L.push(findings(r).join(' '));
  L.push('');
  L.push('## What was tried');
  L.push('');
  L.push('This run:');
  L.push('');
  L.push(
    `- training steps: ${o.steps} per task (single-task); ${o.steps} × ${n} = ${(o.steps * n).toLocaleString('en-US')} for the whole-set adapter; none for \`none\``,
  );
  L.push(
    `- learning rate: ${o.lr} peak (linear warm-up ${pct(Number((r.runOptions.train as { warmupRatio?: number }).warmupRatio ?? 0), 0)} of the steps, then linear decay to 0), batch 1`,
  );
  L.push(
    `- LoRA: rank ${o.rank}, alpha ${2 * o.rank}, every linear layer${o.trainEmbeddings ? ', plus the embeddings and output layer trained in full' : ''}`,
  );
  L.push(
    `- training augmentations: ${o.trainAugmentations} per leave-one-out target (8 rotations/flips, colour permutations keeping 0, shuffled pair order), at most ${String((r.runOptions.train as { maxSamples?: number }).maxSamples)} samples per task`,
  );
  L.push(`- inference: ${o.augmentations} views per test input, greedy decoding, voted to 2 attempts`);
  L.push(`- seed: ${o.seed}`);
  L.push('');
  if (r.tried.length > 1) {
    L.push(`Every setting run on this machine (found under \`${o.out}\`):`);
    L.push('');
    L.push(
      mdTable(
        [
          'date',
          'model',
          'tasks',
          'steps',
          'lr',
          'rank',
          'views',
          'train aug.',
          'embeddings',
          'single-task',
          'whole-set',
          'none',
        ],
        r.tried.map((t) => [
          t.date.slice(0, 16).replace('T', ' '),
          t.model,
          String(t.tasks),
          String(t.steps),
          String(t.lr),
          String(t.rank),
          String(t.augmentations),
          String(t.trainAugmentations),
          t.trainEmbeddings ? 'yes' : 'no',
          ...(['single-task', 'whole-set', 'none'] as const).map((m) =>
            t.vote2[m] === undefined ? '-' : pct(t.vote2[m]!),
          ),
        ]),
        [false, false, true, true, true, true, true, true, false, true, true, true],
      ),
    );
  } else {
    L.push(
      'No other setting has been run on this machine yet (the study lists every setting found under its out folder).',
    );
  }
  L.push('');
  L.push('## Setup');
  L.push('');
  L.push(
    `- **Tasks**: ${n} tasks, the list \`${r.taskList.file}\`${o.limit !== undefined ? ` (its first ${o.limit})` : ''}. Rule: ${r.taskList.rule}`,
  );
  const info = r.model.info;
  const training = r.model.training;
  L.push(
    `- **Model**: \`${r.model.name}\`${r.model.path === r.model.name ? '' : ` (${r.model.path})`}: ${info.modelType}, ${info.nParams.toLocaleString('en-US')} parameters, ` +
      `${info.nTrainable.toLocaleString('en-US')} trainable in the adapter, vocabulary ${info.vocabSize}, context ${info.maxPositionEmbeddings ?? '?'} tokens` +
      (r.model.weightsSha256 ? `; model.safetensors sha256 ${r.model.weightsSha256}…` : '') +
      (training
        ? `; pretrained ${String(training.steps)} steps (${Number(training.tokens ?? 0).toLocaleString('en-US')} tokens), held-out exact match ${pct(Number(training.heldoutExact ?? 0))}`
        : ''),
  );
  const m = r.machine;
  L.push(
    `- **Machine**: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.platform}; ${m.device}, ${m.dtype}, ${m.threads} torch thread(s); ` +
      `Node ${m.node}, Python ${m.python ?? '?'}, torch ${m.torch ?? '?'}, transformers ${m.transformers ?? '?'}, peft ${m.peft ?? '?'}. ` +
      `Load average ${m.loadAverage[0].toFixed(1)} at the start and ${m.loadAverage[1].toFixed(1)} at the end (above ${m.cores} means other jobs shared the CPU, and the times are longer than on a quiet machine).`,
  );
  const resumed = r.modes.reduce((a, x) => a + x.resumed, 0);
  L.push(
    `- **Wall time**: ${duration(r.modes.reduce((a, x) => a + x.seconds, 0))} over the modes (${r.modes.map((x) => `${x.mode} ${duration(x.seconds)}`).join(', ')}); ` +
      `this invocation ${duration(r.invocationSeconds)} (estimate at its start: ${duration(r.estimateSeconds)})` +
      (resumed > 0 ? `; ${resumed} task run(s) were resumed from an earlier invocation's journals` : '') +
      '.',
  );
  L.push(
    `- **Run folders**: ${r.modes.map((x) => `\`${x.dir}\``).join(', ')} (journal \`results.jsonl\`, \`submission.json\`, \`report.html\`).`,
  );
  L.push('');
  L.push('Study options (`bench/accuracy/run.ts`, defaults filled in):');
  L.push('');
  L.push('```json');
  L.push(JSON.stringify(o, null, 2));
  L.push('```');
  L.push('');
  L.push(
    'Options every mode passed to `runSingleTaskTTFT` (besides `mode` and `out`), every default filled in:',
  );
  L.push('');
  L.push('```json');
  L.push(JSON.stringify(r.runOptions, null, 2));
  L.push('```');
  L.push('');
  L.push('## Per task');
  L.push('');
  L.push('vote_2 / correct_size of each task in each mode; ✓ marks a solved task.');
  L.push('');
  L.push('<details><summary>All tasks</summary>');
  L.push('');
  L.push(
    mdTable(
      ['task', 'tokens', ...r.modes.map((x) => x.mode)],
      r.taskList.ids.map((id) => [
        id,
        String(r.taskList.tokens[id] ?? ''),
        ...r.modes.map((x) => {
          const t = x.perTask[id];
          if (t === undefined) return '-';
          const status = t.status === 'done' ? '' : ` (${t.status})`;
          return `${t.vote2 === 1 ? '✓ ' : ''}${pct(t.vote2, 0)} / ${pct(t.correctSize, 0)}${status}`;
        }),
      ]),
      [false, true, ...r.modes.map(() => true)],
    ),
  );
  L.push('');
  L.push('</details>');
  L.push('');
  L.push('## Reproduce');
  L.push('');
  L.push('```sh');
  L.push(r.command ?? 'npx tsx bench/accuracy/run.ts');
  L.push('npx tsx bench/accuracy/tasks.ts --check   # the task list is what the rule gives');
  L.push('```');
  L.push('');
  L.push(
    'The runs resume from their journals: the same command continues a stopped study. See [bench/README.md](../bench/README.md#accuracy-the-three-modes-on-arc-agi-1-evaluation).',
  );
  L.push('');
  return L.join('\n');
}
