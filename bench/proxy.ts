/**
 * `npm run bench:proxy` — what the gateway costs on the hot path. Takes no options
 * (settings below are environment variables) but --help.
 *
 * Measures, in one run, QIDO-RS `GET /studies` and WADO-RS instance retrieve
 * (one real ~217 KB instance: test/fixtures/dicom-samples/transfer-syntax/siemens_mosaic_7.dcm,
 * a 384x384 16-bit Siemens EPI mosaic stored JPEG-LS lossless and fetched
 * as stored with `transfer-syntax=*`, so neither side transcodes) directly
 * against Orthanc and through the gateway, with the same load generator
 * settings: N keep-alive connections, bounded duration, every body read.
 * Direct and gateway phases alternate (ABBA per round) so drifting machine
 * load hits both sides alike; rounds are merged (all samples) at the end. Each
 * phase is one closed loop: a warm-up, then the measured window (bench/lib/load.ts).
 *
 * Starts what it needs: an Orthanc from deploy/local/stack.sh in .stack/bench
 * (unless CBMIR_BENCH_ORTHANC_URL points at a running one) and the gateway as
 * a child process (its own event loop, as in production; the load generator
 * would otherwise share it). Writes the "Proxy" section of docs/benchmarks.md
 * and prints one JSON object as the last stdout line, both with a met/missed
 * verdict per target (bench/lib/proxy-targets.ts); `errors` per endpoint counts the
 * failed requests, direct and through the gateway, over every round.
 *
 * Settings (env): CBMIR_BENCH_CONNECTIONS [8], CBMIR_BENCH_DURATION_MS [5000]
 * per phase, CBMIR_BENCH_ROUNDS [5], CBMIR_BENCH_WARMUP_MS [1000],
 * CBMIR_BENCH_ORTHANC_PORT [18057], CBMIR_BENCH_GATEWAY_PORT [18088],
 * CBMIR_BENCH_FLOOR [1]: also measure an L4 byte pipe (bench/lib/tcp-pipe.ts,
 * port CBMIR_BENCH_FLOOR_PORT [18089]) — the cost of the extra hop alone, for context,
 * CBMIR_BENCH_ORTHANC_URL (use this Orthanc instead of starting one),
 * CBMIR_DICOM_SAMPLES [test/fixtures/dicom-samples: the repository's copy, so the
 * benchmark needs nothing outside it].
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { benchCli, orUsageExit, UsageError } from './lib/args.js';
import { startChild } from './lib/child.js';
import { onInterrupt } from './lib/interrupt.js';
import { processCpuMs, selfCpuMs } from './lib/cpu.js';
import { proxyVerdicts, PROXY_TARGETS } from './lib/proxy-targets.js';
import { runLoad, type LoadResult } from './lib/load.js';
import { markdownTable, upsertSection } from './lib/report.js';
import { median, summarise } from './lib/stats.js';

// Before anything else: --help must never start a run (which rewrites docs/benchmarks.md).
benchCli(
  'bench:proxy',
  `usage: npm run bench:proxy   (or: npm run bench -- proxy)

The gateway's cost on the hot path: QIDO and WADO through the gateway vs directly against
Orthanc, rounds alternated. Prints one JSON line and writes the "Proxy" section of
docs/benchmarks.md. Settings are environment variables [defaults]:
  CBMIR_BENCH_CONNECTIONS [8]    CBMIR_BENCH_DURATION_MS [5000]   CBMIR_BENCH_ROUNDS [5]
  CBMIR_BENCH_WARMUP_MS [1000]   CBMIR_BENCH_ORTHANC_PORT [18057] CBMIR_BENCH_GATEWAY_PORT [18088]
  CBMIR_BENCH_FLOOR [1]          CBMIR_BENCH_FLOOR_PORT [18089]   CBMIR_BENCH_ORTHANC_URL
  CBMIR_DICOM_SAMPLES [test/fixtures/dicom-samples]`,
  {},
);

const ROOT = path.resolve(import.meta.dirname, '..');
const env = process.env;
const num = (name: string, dflt: number): number =>
  orUsageExit('bench:proxy', () => {
    const v = env[name];
    if (v === undefined || v === '') return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${name} must be a positive number, got ${v}`);
    return n;
  });
const CONNECTIONS = num('CBMIR_BENCH_CONNECTIONS', 8);
const DURATION_MS = num('CBMIR_BENCH_DURATION_MS', 5000);
const ROUNDS = num('CBMIR_BENCH_ROUNDS', 5);
const WARMUP_MS = num('CBMIR_BENCH_WARMUP_MS', 1000);
const ORTHANC_PORT = num('CBMIR_BENCH_ORTHANC_PORT', 18057);
const GATEWAY_PORT = num('CBMIR_BENCH_GATEWAY_PORT', 18088);
const FLOOR = env.CBMIR_BENCH_FLOOR !== '0';
const FLOOR_PORT = num('CBMIR_BENCH_FLOOR_PORT', 18089);
const SAMPLES = env.CBMIR_DICOM_SAMPLES || path.join(ROOT, 'test/fixtures/dicom-samples');
const SAMPLE_FILE = 'transfer-syntax/siemens_mosaic_7.dcm';
const WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*';
const STACK_DIR = path.join(ROOT, '.stack/bench');
const ORTHANC_NAME = 'bench-orthanc';

const log = (msg: string): void => {
  process.stderr.write(`[bench:proxy] ${msg}\n`);
};

async function getJson<T>(url: string, init: Parameters<typeof request>[1] = {}): Promise<T> {
  const r = await request(url, init);
  const text = await r.body.text();
  if (r.statusCode >= 300) throw new Error(`${init.method ?? 'GET'} ${url} → ${r.statusCode}: ${text.slice(0, 200)}`);
  return JSON.parse(text) as T;
}

/** Orthanc to measure against: given, or started in .stack/bench. Returns its root URL and a stop function. */
async function ensureOrthanc(): Promise<{ url: string; pid: number | undefined; stop: () => void }> {
  if (env.CBMIR_BENCH_ORTHANC_URL) return { url: env.CBMIR_BENCH_ORTHANC_URL.replace(/\/+$/, ''), pid: undefined, stop: () => {} };
  const stackEnv = { ...env, CBMIR_STACK_DIR: STACK_DIR, ORTHANC_NAME, ORTHANC_HTTP_PORT: String(ORTHANC_PORT) };
  const stack = (cmd: string): void => {
    execFileSync('bash', [path.join(ROOT, 'deploy/local/stack.sh'), cmd, 'orthanc'], {
      env: stackEnv,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  };
  const pidFile = path.join(STACK_DIR, ORTHANC_NAME, 'orthanc.pid');
  // Not the pid file's presence: one left by a crash or a reboot would make us take an Orthanc we
  // start for someone else's and leave it running. stack.sh status checks the process (exit 3: stopped).
  const status = spawnSync('bash', [path.join(ROOT, 'deploy/local/stack.sh'), 'status', 'orthanc'], {
    env: stackEnv,
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  if (status.status !== 0 && status.status !== 3) {
    throw new Error(
      `deploy/local/stack.sh status orthanc (CBMIR_STACK_DIR=${STACK_DIR}, ORTHANC_NAME=${ORTHANC_NAME}) exited ${status.status ?? status.signal}: ${status.stdout.trim()}`,
    );
  }
  const wasRunning = status.status === 0;
  log(`Orthanc: ${wasRunning ? 'reusing' : 'starting'} ${ORTHANC_NAME} on 127.0.0.1:${ORTHANC_PORT} (deploy/local/stack.sh)`);
  stack('start');
  const pid = Number(readFileSync(pidFile, 'utf8').trim()) || undefined;
  let stopped = false;
  const stop = (): void => {
    if (!wasRunning && !stopped) stack('stop');
    stopped = true;
  };
  onInterrupt(stop);
  return { url: `http://127.0.0.1:${ORTHANC_PORT}`, pid, stop };
}

interface Target {
  readonly name: 'qido' | 'wado';
  readonly path: string;
  readonly headers: Record<string, string>;
}

type SideName = 'direct' | 'gateway' | 'floor';

interface Side {
  readonly results: LoadResult[];
  cpuMs: { gateway: number; orthanc: number; client: number };
}

async function main(): Promise<void> {
  const orthanc = await ensureOrthanc();
  let gateway: Awaited<ReturnType<typeof startChild>> | undefined;
  let pipe: Awaited<ReturnType<typeof startChild>> | undefined;
  try {
    const file = readFileSync(path.join(SAMPLES, SAMPLE_FILE));
    const stored = await getJson<{ ID: string }>(`${orthanc.url}/instances`, {
      method: 'POST',
      body: file,
      headers: { 'content-type': 'application/dicom' },
    });
    const tags = await getJson<Record<string, string>>(`${orthanc.url}/instances/${stored.ID}/tags?simplify`);
    const studies = await getJson<unknown[]>(`${orthanc.url}/dicom-web/studies`);
    const instancePath = `/dicom-web/studies/${tags.StudyInstanceUID}/series/${tags.SeriesInstanceUID}/instances/${tags.SOPInstanceUID}`;
    log(
      `instance ${SAMPLE_FILE} (${file.length} bytes) stored; the PACS holds ${studies.length} stud${studies.length === 1 ? 'y' : 'ies'}`,
    );

    gateway = await startChild(process.execPath, ['--import', 'tsx', path.join(ROOT, 'gateway/main.ts')], {
      env: {
        ...env,
        CBMIR_HOST: '127.0.0.1',
        CBMIR_PORT: String(GATEWAY_PORT),
        CBMIR_PACS_URL: `${orthanc.url}/dicom-web`,
        CBMIR_LOG_LEVEL: 'warn',
      },
      readyUrl: `http://127.0.0.1:${GATEWAY_PORT}/healthz`,
    });
    const gatewayPid = gateway.child.pid;
    log(`gateway child pid ${gatewayPid} on 127.0.0.1:${GATEWAY_PORT}`);
    const orthancPort = new URL(orthanc.url).port || '80';
    if (FLOOR) {
      pipe = await startChild(
        process.execPath,
        ['--import', 'tsx', path.join(ROOT, 'bench/lib/tcp-pipe.ts'), String(FLOOR_PORT), '127.0.0.1', orthancPort],
        {
          readyUrl: `http://127.0.0.1:${FLOOR_PORT}/dicom-web/studies?limit=1`,
        },
      );
    }
    const pids: Record<SideName, number | undefined> = { direct: undefined, gateway: gatewayPid, floor: pipe?.child.pid };
    const sideNames: SideName[] = FLOOR ? ['direct', 'gateway', 'floor'] : ['direct', 'gateway'];

    const targets: Target[] = [
      { name: 'qido', path: '/dicom-web/studies', headers: { accept: 'application/dicom+json' } },
      { name: 'wado', path: instancePath, headers: { accept: WADO_ACCEPT } },
    ];
    const bases: Record<SideName, string> = {
      direct: orthanc.url,
      gateway: `http://127.0.0.1:${GATEWAY_PORT}`,
      floor: `http://127.0.0.1:${FLOOR_PORT}`,
    };
    const fresh = (): Side => ({ results: [], cpuMs: { gateway: 0, orthanc: 0, client: 0 } });
    const sides: Record<string, Record<SideName, Side>> = {};
    for (const t of targets) sides[t.name] = { direct: fresh(), gateway: fresh(), floor: fresh() };

    // Every side must give the same answer as the PACS, or we would be measuring something else.
    for (const t of targets) {
      const ref = await request(bases.direct + t.path, { headers: t.headers });
      const refLen = (await ref.body.arrayBuffer()).byteLength;
      for (const which of sideNames) {
        const r = await request(bases[which] + t.path, { headers: t.headers });
        const len = (await r.body.arrayBuffer()).byteLength;
        if (r.statusCode !== ref.statusCode || Math.abs(len - refLen) > 64) {
          throw new Error(
            `${which} answers ${t.name} with ${r.statusCode}/${len} bytes, the PACS with ${ref.statusCode}/${refLen}: not measuring`,
          );
        }
      }
    }

    // JIT warm-up before anything counts: the gateway's hot path (and the load
    // generator's) reaches steady state only after a few thousand requests on
    // this kind of machine; the first phase would otherwise pay for it.
    const jitWarmupMs = Math.max(3000, WARMUP_MS * 3);
    for (const t of targets) {
      for (const which of sideNames) {
        await runLoad({ url: bases[which] + t.path, headers: t.headers, connections: CONNECTIONS, durationMs: jitWarmupMs });
      }
    }
    log(`warm-up done (${jitWarmupMs / 1000} s per side and endpoint)`);

    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        // Rotate who goes first each round, so drifting outside load hits every side alike.
        const order = sideNames.map((_, i) => sideNames[(i + round) % sideNames.length] as SideName);
        if (round % 2 === 1) order.reverse();
        for (const which of order) {
          const proxyPid = pids[which];
          const cpuNow = () => ({
            g: proxyPid ? processCpuMs(proxyPid) : undefined,
            o: orthanc.pid ? processCpuMs(orthanc.pid) : undefined,
            c: selfCpuMs(),
          });
          // CPU read at the window's edges: the warm-up (same loop, unrecorded) is not counted.
          let cpu0: ReturnType<typeof cpuNow> | undefined;
          let cpu1: ReturnType<typeof cpuNow> | undefined;
          const r = await runLoad({
            url: bases[which] + t.path,
            headers: t.headers,
            connections: CONNECTIONS,
            warmupMs: WARMUP_MS,
            durationMs: DURATION_MS,
            keepSamples: true,
            onWindowStart: () => (cpu0 = cpuNow()),
            onWindowEnd: () => (cpu1 = cpuNow()),
          });
          const side = sides[t.name]![which];
          side.results.push(r);
          if (cpu0 && cpu1) {
            side.cpuMs.client += cpu1.c - cpu0.c;
            if (cpu0.g !== undefined) side.cpuMs.gateway += (cpu1.g ?? cpu0.g) - cpu0.g;
            if (cpu0.o !== undefined) side.cpuMs.orthanc += (cpu1.o ?? cpu0.o) - cpu0.o;
          }
          log(
            `round ${round + 1}/${ROUNDS} ${t.name} ${which}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, errors ${r.errors}${r.firstError ? ` (${r.firstError})` : ''}`,
          );
        }
      }
    }

    const merged = (s: Side) => {
      const requests = s.results.reduce((a, r) => a + r.requests, 0);
      const ms = s.results.reduce((a, r) => a + r.durationMs, 0);
      // Every recorded request, failed ones at the time they took (bench/lib/load.ts).
      const all = new Float64Array(s.results.reduce((a, r) => a + (r.samples?.length ?? 0), 0));
      let o = 0;
      for (const r of s.results) {
        all.set(r.samples as Float64Array, o);
        o += (r.samples as Float64Array).length;
      }
      const lat = summarise(all);
      return {
        requests,
        errors: s.results.reduce((a, r) => a + r.errors, 0),
        rps: (requests / ms) * 1000,
        p50: lat.p50Ms,
        p99: lat.p99Ms,
        bytes: s.results[0]?.bytesPerRequest ?? 0,
        perRequestCpuMs: {
          client: s.cpuMs.client / Math.max(1, requests),
          orthanc: orthanc.pid ? s.cpuMs.orthanc / Math.max(1, requests) : undefined,
          gateway: s.cpuMs.gateway / Math.max(1, requests),
        },
      };
    };
    const round2 = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;
    // Headline figures are medians over rounds of values paired within a round
    // (the sides of one round ran back to back): one round disturbed by outside
    // load moves a median less than it moves pooled totals.
    const perRound = (t: string, side: SideName, f: (r: LoadResult) => number): number => median(sides[t]![side].results.map(f));
    const perRoundRatio = (t: string, side: SideName): number =>
      median(sides[t]![side].results.map((r, i) => r.rps / (sides[t]!.direct.results[i] as LoadResult).rps));
    const perRoundAdded = (t: string, side: SideName): number =>
      median(sides[t]![side].results.map((r, i) => r.p50Ms - (sides[t]!.direct.results[i] as LoadResult).p50Ms));
    const out: Record<
      string,
      {
        direct_rps: number;
        gateway_rps: number;
        ratio: number;
        added_p50_ms: number;
        direct_p50_ms: number;
        gateway_p50_ms: number;
        direct_p99_ms: number;
        gateway_p99_ms: number;
        errors: number;
      }
    > = {};
    const rows: (string | number)[][] = [];
    const cpuRows: (string | number)[][] = [];
    const ratioRows: (string | number)[][] = [];
    let wadoBytes = 0;
    for (const t of targets) {
      const d = merged(sides[t.name]!.direct);
      const g = merged(sides[t.name]!.gateway);
      out[t.name] = {
        direct_rps: round2(
          perRound(t.name, 'direct', (r) => r.rps),
          1,
        ),
        gateway_rps: round2(
          perRound(t.name, 'gateway', (r) => r.rps),
          1,
        ),
        ratio: round2(perRoundRatio(t.name, 'gateway'), 3),
        added_p50_ms: round2(perRoundAdded(t.name, 'gateway'), 3),
        direct_p50_ms: round2(d.p50, 3),
        gateway_p50_ms: round2(g.p50, 3),
        direct_p99_ms: round2(d.p99, 3),
        gateway_p99_ms: round2(g.p99, 3),
        errors: d.errors + g.errors,
      };
      const fl = FLOOR ? merged(sides[t.name]!.floor) : undefined;
      if (t.name === 'wado') wadoBytes = g.bytes;
      rows.push(
        [t.name, 'direct', round2(d.rps, 1), round2(d.p50), round2(d.p99), d.requests, d.errors, d.bytes],
        [t.name, 'gateway', round2(g.rps, 1), round2(g.p50), round2(g.p99), g.requests, g.errors, g.bytes],
      );
      if (fl) rows.push([t.name, 'L4 pipe (floor)', round2(fl.rps, 1), round2(fl.p50), round2(fl.p99), fl.requests, fl.errors, fl.bytes]);
      const perRoundRatios = (side: SideName): string =>
        sides[t.name]![side].results.map((r, i) => (r.rps / (sides[t.name]!.direct.results[i] as LoadResult).rps).toFixed(2)).join(', ');
      ratioRows.push([
        t.name,
        'gateway',
        round2(perRoundRatio(t.name, 'gateway'), 3),
        round2(perRoundAdded(t.name, 'gateway'), 3),
        perRoundRatios('gateway'),
        round2(g.rps / d.rps, 3),
      ]);
      if (fl)
        ratioRows.push([
          t.name,
          'L4 pipe (floor)',
          round2(perRoundRatio(t.name, 'floor'), 3),
          round2(perRoundAdded(t.name, 'floor'), 3),
          perRoundRatios('floor'),
          round2(fl.rps / d.rps, 3),
        ]);
      const f = (x: number | undefined): string => (x === undefined ? 'n/a' : x.toFixed(3));
      // Throughput ratio if CPU were the only limit (all parties on the same saturated cores):
      // CPU of a direct request over CPU of a proxied one (the direct run's Orthanc + client, plus the proxy).
      const directCpu = (d.perRequestCpuMs.orthanc ?? Number.NaN) + d.perRequestCpuMs.client;
      const bound = (proxyCpu: number): string => (Number.isFinite(directCpu) ? (directCpu / (directCpu + proxyCpu)).toFixed(3) : 'n/a');
      cpuRows.push(
        [t.name, 'direct', f(d.perRequestCpuMs.orthanc), '—', f(d.perRequestCpuMs.client), '1'],
        [
          t.name,
          'gateway',
          f(g.perRequestCpuMs.orthanc),
          f(g.perRequestCpuMs.gateway),
          f(g.perRequestCpuMs.client),
          bound(g.perRequestCpuMs.gateway),
        ],
      );
      if (fl)
        cpuRows.push([
          t.name,
          'L4 pipe (floor)',
          f(fl.perRequestCpuMs.orthanc),
          f(fl.perRequestCpuMs.gateway),
          f(fl.perRequestCpuMs.client),
          bound(fl.perRequestCpuMs.gateway),
        ]);
    }

    const verdicts = proxyVerdicts(out);
    const load = os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ');
    const md = [
      `Written by \`npm run bench:proxy\` (bench/proxy.ts) on ${new Date().toISOString()}.`,
      '',
      `Setup: ${os.cpus().length} CPU cores (${os.cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, Orthanc 1.10 + DICOMweb plugin 1.7 ` +
        `(deploy/local/stack.sh, ${studies.length} stud${studies.length === 1 ? 'y' : 'ies'} stored), gateway as a child process (log level warn), ` +
        `load generator (bench/lib/load.ts: undici Pool, keep-alive) in the parent: ${CONNECTIONS} connections, ` +
        `${ROUNDS} rounds × ${DURATION_MS / 1000} s per side and endpoint, each window after ${WARMUP_MS / 1000} s warm-up in the same closed loop (only requests started in the window are recorded; a failed one counts in p50/p99 at the time it took), plus ${Math.max(3000, WARMUP_MS * 3) / 1000} s JIT warm-up per side and endpoint at the start, sides alternated (order rotated and reversed every round), ` +
        `all samples merged. Load average at the end: ${load}. Everything shares the same cores, including whatever else runs on the machine, ` +
        'so requests/s move with outside load; the CPU-per-request table moves much less. ' +
        (FLOOR
          ? 'The "L4 pipe" row is a byte pipe in Node without any HTTP processing (bench/lib/tcp-pipe.ts): what the extra loopback hop alone costs here.'
          : ''),
      '',
      `WADO-RS: \`${SAMPLE_FILE}\` (384x384 16-bit Siemens mosaic, JPEG-LS lossless), ${file.length} bytes on disk, ` +
        `retrieved with \`Accept: ${WADO_ACCEPT}\` (as stored, no transcoding) → ${wadoBytes} bytes per answer. QIDO: \`GET /dicom-web/studies\`.`,
      '',
      markdownTable(['endpoint', 'path', 'req/s', 'p50 ms', 'p99 ms', 'requests', 'errors', 'bytes/answer'], rows),
      '',
      markdownTable(
        [
          'endpoint',
          'path',
          'ratio vs direct (median of rounds)',
          'added p50 ms (median of rounds)',
          'ratio per round',
          'ratio of pooled req/s',
        ],
        ratioRows,
      ),
      '',
      'The JSON line printed at the end carries the medians over rounds (req/s, ratio, added p50) and the verdict on each target.',
      '',
      'CPU time per request (ms, user+system, from /proc):',
      '',
      markdownTable(['endpoint', 'path', 'Orthanc', 'proxy (gateway or pipe)', 'load generator', 'CPU-bound ratio'], cpuRows),
      '',
      '"CPU-bound ratio" = (Orthanc + load generator CPU of a direct request) / (the same + the proxy\'s CPU): the ' +
        'throughput ratio to expect when every party competes for the same saturated cores, as here. It is steadier ' +
        'from run to run than the measured ratio, which also moves with whatever else the machine runs.',
      '',
      `Targets: ratio ≥ ${PROXY_TARGETS.minRatio.toFixed(2)} and added p50 ≤ ${PROXY_TARGETS.maxAddedP50Ms} ms for both, judged on the medians over rounds above, and no failed request (direct or gateway, every round):`,
      '',
      markdownTable(['target', 'result'], verdicts.rows),
    ].join('\n');
    upsertSection(path.join(ROOT, 'docs/benchmarks.md'), 'Proxy', md);
    log('docs/benchmarks.md: section "Proxy" written');

    const summary = {
      qido: {
        direct_rps: out.qido!.direct_rps,
        gateway_rps: out.qido!.gateway_rps,
        ratio: out.qido!.ratio,
        added_p50_ms: out.qido!.added_p50_ms,
        errors: out.qido!.errors,
      },
      wado: {
        direct_rps: out.wado!.direct_rps,
        gateway_rps: out.wado!.gateway_rps,
        ratio: out.wado!.ratio,
        added_p50_ms: out.wado!.added_p50_ms,
        errors: out.wado!.errors,
      },
      targets: verdicts.byEndpoint,
      targets_met: verdicts.met,
    };
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } finally {
    await gateway?.stop();
    await pipe?.stop();
    orthanc.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:proxy failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
