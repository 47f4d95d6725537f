/**
 * An interrupted benchmark stops what it started (bench/lib/interrupt.ts): before, Node's
 * default SIGTERM/SIGINT exit skipped main()'s `finally` and left its children running.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { freePort } from '../helpers/ports.js';

const CHILD_TS = pathToFileURL(path.resolve(import.meta.dirname, '../../bench/lib/child.ts')).href;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`bench: a benchmark sent ${signal} stops the server it started and exits ${signal === 'SIGTERM' ? 143 : 130}`, async () => {
    const port = await freePort();
    const server = `require('node:http').createServer((q, s) => s.end('ok')).listen(${port}, '127.0.0.1')`;
    const script = `
      const { startChild } = await import(${JSON.stringify(CHILD_TS)});
      const c = await startChild(process.execPath, ['-e', ${JSON.stringify(server)}], { readyUrl: 'http://127.0.0.1:${port}/' });
      console.log('ready ' + c.child.pid);
      setInterval(() => {}, 1000); // a benchmark mid-run
    `;
    const bench = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    bench.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = once(bench, 'exit');
    const serverPid = await new Promise<number>((resolve, reject) => {
      bench.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /ready (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      bench.once('exit', (code) => reject(new Error(`the benchmark exited (${code}) before its server was up:\n${err}`)));
    });
    try {
      assert.ok(alive(serverPid));
      bench.kill(signal);
      const [code] = (await exited) as [number | null];
      assert.equal(code, signal === 'SIGTERM' ? 143 : 130, err);
      assert.match(err, new RegExp(`${signal}: stopping what this benchmark started`));
      assert.equal(alive(serverPid), false, 'the server the benchmark started is still running');
    } finally {
      if (alive(serverPid)) process.kill(serverPid, 'SIGKILL');
      bench.kill('SIGKILL');
    }
  });
}
