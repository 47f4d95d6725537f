import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ensureService, ownsService, stopEnsuredServices, type StackRunner } from '../../bench/lib/live-stack.js';

/** A stack.sh stand-in: `running` services answer status 0, others 3; every call is recorded. */
function fakeStack(running: Record<string, number>): { runner: StackRunner; calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    runner: {
      status: (svc) => {
        calls.push(`status ${svc}`);
        const code = running[svc] ?? 3;
        return { code, out: code === 1 ? `${svc}: running (pid 1) but not answering` : '' };
      },
      start: (svc) => void calls.push(`start ${svc}`),
      stop: (svc) => void calls.push(`stop ${svc}`),
    },
  };
}

test('ensureService: a service found running is used and left running; only what the run started is stopped', () => {
  delete process.env.CBMIR_BENCH_KEEP_STACK;
  const { runner, calls } = fakeStack({ redis: 0 });
  const spec = (port: number) => ({ stackDir: '/tmp/cbmir-bench-test-stack', port });
  const quiet = () => {};
  assert.equal(ensureService('orthanc', spec(18061), quiet, runner), 'http://127.0.0.1:18061');
  assert.equal(ensureService('redis', spec(16383), quiet, runner), 'redis://127.0.0.1:16383');
  assert.equal(ensureService('es', spec(19204), quiet, runner), 'http://127.0.0.1:19204');
  stopEnsuredServices(quiet);
  assert.deepEqual(calls, [
    'status orthanc',
    'start orthanc',
    'status redis',
    // stack.sh start on a running service only waits until it answers
    'start redis',
    'status es',
    'start es',
    'stop es',
    'stop orthanc',
  ]);
  calls.length = 0;
  stopEnsuredServices(quiet);
  assert.deepEqual(calls, [], 'stopped once');
});

test('ensureService: a service given by URL is neither asked about, started nor stopped', () => {
  const { runner, calls } = fakeStack({});
  assert.equal(
    ensureService('es', { stackDir: '/tmp/x', port: 1, url: 'http://es:9200/' }, () => {}, runner),
    'http://es:9200',
  );
  stopEnsuredServices(() => {});
  assert.deepEqual(calls, []);
});

test('ownsService: running (0) is not ours, stopped (3) is; a service in another state stops the run before anything starts', () => {
  assert.equal(ownsService('es', { code: 0, out: '' }), false);
  assert.equal(ownsService('es', { code: 3, out: '' }), true);
  const { runner, calls } = fakeStack({ es: 1 });
  assert.throws(
    () => ensureService('es', { stackDir: '/tmp/x', port: 1 }, () => {}, runner),
    /stack\.sh status es exited 1: es: running \(pid 1\) but not answering/,
  );
  assert.deepEqual(calls, ['status es']);
  assert.throws(() => ownsService('redis', { code: null, out: '' }), /exited on a signal/);
});
