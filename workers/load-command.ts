/**
 * The `cbmir load` command: options → runLoad → progress (stderr: a bar on a terminal,
 * elsewhere a line every 30 s) → summary (stdout; `--json` for one machine-readable line).
 * Exit status: 0 when every selected image was stored/written/converted, 1 when any failed,
 * the run was interrupted (Ctrl-C, SIGTERM), the target refused any batch (401/403/404/405: no
 * more are sent) or answered none of 3 batches in a row, a file could not be written under --out
 * (no more are written), labels.csv lists no image, or the filters selected nothing; 2 for bad
 * usage (an --out that is not a writable folder included).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { DatasetError, type UnmatchedFilter } from './load/dataset.js';
import { authorizationHeader } from './load/stow.js';
import { MAX_FAILURES_LISTED, outDirProblem, runLoad, type LoadMode, type LoadProgress, type LoadSummary } from './load.js';
import { dateOption, exitStatusHelp, invocationPath } from './command-config.js';
import { progressLines } from './progress-lines.js';

const DEFAULT_URL = 'http://127.0.0.1:8080/dicom-web';

const positiveInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};

/** A whole number in min..max, or exit 2 naming the option and the range. */
const intIn = (name: string, min: number, max: number) => (v: string) => {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isInteger(n) || n < min || n > max)
    throw new InvalidArgumentError(`${name} must be ${min}..${max}`);
  return n;
};

/** A comma-separated list; an empty one (`--patients ""`) would select nothing, or everything if ignored. */
const list = (name: string) => (v: string) => {
  const values = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (values.length === 0) throw new InvalidArgumentError(`${name} must name at least one value (comma-separated)`);
  return values;
};

const foldList = (v: string) => {
  const folds = list('--folds')(v).map(Number);
  if (!folds.every(Number.isInteger)) throw new InvalidArgumentError('folds must be a comma-separated list of integers, e.g. 1,2');
  return folds;
};

interface LoadCliOptions {
  url: string;
  auth?: string;
  limit?: number;
  patients?: string[];
  folds?: number[];
  classes?: string[];
  dryRun?: boolean;
  out?: string;
  batchSize: number;
  concurrency: number;
  retries: number;
  timeoutMs: number;
  studyDate?: string;
  datasetName?: string;
  json?: boolean;
  progress: boolean;
}

const FAILURES_PRINTED = 50;

const verbOf = (mode: LoadMode) => (mode === 'send' ? 'stored' : mode === 'write' ? 'written' : 'converted');

/** `--classes Glioma (labels.csv has: glioma, meningioma)`, one per filter, joined by "; ". */
export function describeUnmatched(unmatched: readonly UnmatchedFilter[]): string {
  return unmatched.map((u) => `${u.filter} ${u.values.join(',')}${u.known ? ` (labels.csv has: ${u.known.join(', ')})` : ''}`).join('; ');
}

/** Why a run whose filters selected none of the rows exits 1; undefined when that is not the case. */
export function emptySelectionMessage(s: LoadSummary, filtered: boolean): string | undefined {
  if (!filtered || s.rows === 0 || s.selected > 0) return undefined;
  return s.unmatched?.length
    ? `the filters select none of the ${s.rows} images: nothing in labels.csv matches ${describeUnmatched(s.unmatched)}`
    : `the filters select none of the ${s.rows} images: no image matches all of them together`;
}

/** Why a run over a labels.csv without a single row (a header alone) exits 1; undefined otherwise. */
export function emptyDatasetMessage(s: Pick<LoadSummary, 'rows' | 'rejectedRows'>): string | undefined {
  return s.rows === 0 && s.rejectedRows === 0 ? 'labels.csv lists no images (a header and no rows): nothing to load' : undefined;
}

/**
 * Progress of a load: the bar on a terminal (unless `bar` is false), otherwise, when `lines`,
 * a line on stderr every `everyMs`, so that a run of hours under nohup or CI is not silent.
 */
export function loadProgress(o: {
  bar: boolean;
  lines: boolean;
  mode: LoadMode;
  everyMs?: number;
}): { update(p: LoadProgress): void; stop(): void } | undefined {
  const verb = verbOf(o.mode);
  const ok = (p: LoadProgress) => (o.mode === 'dry-run' ? p.converted : p.stored);
  if (o.bar && process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: ` {bar} {value}/{total} images | {ok} ${verb} | {failed} failed | {eta_formatted} left`,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(p) {
        if (!started) {
          bar.start(p.total, 0, { ok: 0, failed: 0 });
          started = true;
        }
        bar.update(p.done, { ok: ok(p), failed: p.failed });
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  if (!o.lines) return undefined;
  return progressLines((p: LoadProgress) => `cbmir load: ${p.done}/${p.total} images, ${ok(p)} ${verb}, ${p.failed} failed`, o.everyMs);
}

export function printSummary(s: LoadSummary, out: NodeJS.WritableStream = process.stdout): void {
  const verb = verbOf(s.mode);
  const lines = [
    `cbmir load ${s.dataset}: ${s.mode}${s.target ? ` → ${s.target}` : ''}`,
    `  selected ${s.selected} of ${s.rows} images (${s.studies} studies, ${s.series} series)${s.rejectedRows ? `; ${s.rejectedRows} labels.csv rows rejected` : ''}`,
    ...(s.unmatched?.length ? [`  matched nothing in labels.csv: ${describeUnmatched(s.unmatched)}`] : []),
    ...(s.stopped
      ? [`  stopped with ${s.selected - s.stored - s.failed} images not ${s.mode === 'write' ? 'written' : 'sent'}: ${s.stopped}`]
      : []),
    `  converted ${s.converted}${s.mode === 'send' ? `, sent ${s.sent}, stored ${s.stored}` : s.mode === 'write' ? `, written ${s.stored}` : ''}, failed ${s.failed}  (${(s.elapsedMs / 1000).toFixed(1)} s, ${s.imagesPerSecond} images/s)`,
    '  per class:',
    ...Object.entries(s.byClass).map(
      ([c, n]) => `    ${c.padEnd(16)} selected ${String(n.selected).padStart(5)}  ${verb} ${String(s.mode === 'dry-run' ? n.converted : n.stored).padStart(5)}  failed ${String(n.failed).padStart(4)}`,
    ),
    ...(s.failures.length
      ? [
          '  failures:',
          ...s.failures.slice(0, FAILURES_PRINTED).map((f) => `    ${f.file}: ${f.reason}`),
          ...(s.failed > FAILURES_PRINTED
            ? [`    … ${s.failed - FAILURES_PRINTED} more failures (--json lists the first ${MAX_FAILURES_LISTED})`]
            : []),
        ]
      : []),
    ...(s.rejectedRows
      ? [
          '  labels.csv rows rejected (not loaded):',
          ...s.rejected.slice(0, 20).map((r) => `    line ${r.line}${r.file ? ` (${r.file})` : ''}: ${r.reason}`),
          ...(s.rejectedRows > 20 ? [`    … ${s.rejectedRows - 20} more (--json lists the first 100)`] : []),
        ]
      : []),
  ];
  out.write(`${lines.join('\n')}\n`);
}

export function loadCommand(): Command {
  return new Command('load')
    .description('convert a dataset folder (images + labels.csv) to DICOM MR instances and STOW them')
    .argument('<dir>', 'dataset folder with labels.csv (file,label,class_name[,patient_id,fold])')
    .addOption(new Option('--url <dicomweb-root>', 'DICOMweb root to STOW to').env('CBMIR_LOAD_URL').default(DEFAULT_URL))
    .addOption(
      new Option(
        '--auth <credentials>',
        'Authorization: "user:password" or a full header value ("Bearer …"); prefer the variable: a password on the command line stays in the shell history',
      ).env('CBMIR_LOAD_AUTH'),
    )
    .option('--limit <n>', 'load at most n images (after filters)', positiveInt('--limit'))
    .option('--patients <ids>', 'only these patient ids (comma-separated)', list('--patients'))
    .option('--folds <folds>', 'only these folds (comma-separated, e.g. 1,2)', foldList)
    .option('--classes <names>', 'only these class names (comma-separated)', list('--classes'))
    .option('--dry-run', 'convert and check every image, send nothing')
    .option('--out <dir>', 'write .dcm files <dir>/<dataset>/<patient>/<SOP Instance UID>.dcm instead of sending (created if missing)')
    .option('--batch-size <n>', 'instances per STOW request, 1..1000', intIn('--batch-size', 1, 1000), 16)
    .option('--concurrency <n>', 'STOW requests in flight, 1..64', intIn('--concurrency', 1, 64), 4)
    .option('--retries <n>', 'retries per request on transient errors', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 20) throw new InvalidArgumentError('--retries must be 0..20');
      return n;
    }, 3)
    .option('--timeout-ms <ms>', 'per-request timeout, 1..86400000', intIn('--timeout-ms', 1, 86_400_000), 120_000)
    .option('--study-date <YYYYMMDD>', 'Study/Series/Content Date (default: today, UTC)', dateOption('--study-date'))
    .option('--dataset-name <name>', 'dataset name in the DICOM (default: the folder name)')
    .option('--json', 'print the summary as one JSON line')
    .option('--no-progress', 'no progress (a bar on a terminal, elsewhere a line every 30 s)')
    .addHelpText(
      'after',
      exitStatusHelp([
        '0  every selected image stored (written with --out, converted with --dry-run)',
        '1  some failed, labels.csv rows were rejected, the filters selected nothing, labels.csv lists no image,',
        '   interrupted, or stopped (the target refused a batch or did not answer 3, a file could not be written)',
        '2  bad usage: options, an unreadable labels.csv, an --out that is not a writable folder',
      ]),
    )
    .action(async (dir: string, opts: LoadCliOptions, cmd: Command) => {
      if (opts.dryRun && opts.out) cmd.error('--dry-run and --out exclude each other', { exitCode: 2 });
      const mode: LoadMode = opts.out ? 'write' : opts.dryRun ? 'dry-run' : 'send';
      let authorization: string | undefined;
      try {
        authorization = authorizationHeader(opts.auth);
        if (mode === 'send') {
          let u: URL;
          try {
            u = new URL(opts.url);
          } catch {
            throw new Error(`--url is not a URL: ${opts.url.slice(0, 200)}`);
          }
          if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`--url must be an http(s) DICOMweb root, not ${u.protocol}`);
          // It is printed in the summary; a login goes in --auth, never into output or shell history twice.
          if (u.username || u.password) throw new Error('--url must not carry a user or password; give them with --auth user:password');
        }
      } catch (err) {
        cmd.error(`cbmir load: ${(err as Error).message}`, { exitCode: 2 });
      }
      if (opts.out !== undefined) {
        const problem = outDirProblem(invocationPath(opts.out));
        if (problem) cmd.error(`cbmir load: --out ${opts.out}: ${problem}`, { exitCode: 2 });
      }
      const bar = loadProgress({ bar: opts.progress && !opts.json, lines: opts.progress, mode });
      const abort = new AbortController();
      // SIGTERM (systemd, docker stop, a CI timeout) stops like Ctrl-C: in-flight requests are
      // cancelled and the summary says what was stored. A second signal kills at once.
      const onSignal = () => abort.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const filtered = Boolean(opts.patients || opts.folds || opts.classes);
      try {
        const summary = await runLoad({
          dir: invocationPath(dir),
          mode,
          url: opts.url,
          authorization,
          ...(opts.out ? { outDir: invocationPath(opts.out) } : {}),
          ...(opts.datasetName ? { datasetName: opts.datasetName } : {}),
          ...(opts.studyDate ? { studyDate: opts.studyDate } : {}),
          filters: {
            ...(opts.patients ? { patients: new Set(opts.patients) } : {}),
            ...(opts.folds ? { folds: new Set(opts.folds) } : {}),
            ...(opts.classes ? { classes: new Set(opts.classes) } : {}),
            ...(opts.limit !== undefined ? { limit: opts.limit } : {}),
          },
          batchSize: opts.batchSize,
          concurrency: opts.concurrency,
          retries: opts.retries,
          timeoutMs: opts.timeoutMs,
          signal: abort.signal,
          onProgress: (p) => bar?.update(p),
        });
        bar?.stop();
        if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
        else printSummary(summary);
        if (abort.signal.aborted) process.stderr.write('cbmir load: interrupted\n');
        if (summary.stopped) process.stderr.write(`cbmir load: stopped: ${summary.stopped}\n`);
        // A misspelt --classes or a fold that does not exist is not "all 0 images loaded", nor is a labels.csv without rows.
        const empty = emptyDatasetMessage(summary) ?? emptySelectionMessage(summary, filtered);
        if (empty) process.stderr.write(`cbmir load: ${empty}\n`);
        // A rejected labels.csv row is an image not loaded: as much a failure as a refused STOW.
        process.exitCode = summary.failed > 0 || summary.rejectedRows > 0 || abort.signal.aborted || summary.stopped || empty ? 1 : 0;
      } catch (err) {
        bar?.stop();
        if (err instanceof DatasetError) cmd.error(`cbmir load: ${err.message}`, { exitCode: 2 });
        throw err;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
