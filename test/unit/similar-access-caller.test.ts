/** /similar's access checks ask the PACS as the caller: every identity header, not Authorization alone. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PacsClient } from '../../core/pacs/client.js';
import { callerOf } from '../../gateway/caller.js';
import { AccessChecker } from '../../gateway/similar-access.js';

/** A PACS that lets each session cookie read its own study only, and records what it was sent. */
function cookiePacs() {
  const calls: { authorization?: string | undefined; headers?: Readonly<Record<string, string>> }[] = [];
  const pacs = {
    async qido(_path: string, params: Record<string, string | number | undefined>, call: (typeof calls)[number]) {
      calls.push(call);
      const own = call.headers?.cookie === 'session=alice' ? '2.25.1' : call.headers?.cookie === 'session=bob' ? '2.25.2' : undefined;
      return String(params.StudyInstanceUID)
        .split(',')
        .filter((s) => s === own)
        .map((s) => ({ '0020000D': { vr: 'UI', Value: [s] } }));
    },
  } as unknown as PacsClient;
  return { pacs, calls };
}

test('access: a caller known by a session cookie is asked about with that cookie, and cached apart from another', async () => {
  const { pacs, calls } = cookiePacs();
  const access = new AccessChecker(pacs, { ttlMs: 60_000, maxEntries: 100, defaultAuthorization: 'Basic c2VydmljZTpwdw==' });
  const alice = callerOf({ cookie: 'session=alice', accept: 'application/json' });
  const bob = callerOf({ cookie: 'session=bob' });
  assert.deepEqual(Object.fromEntries(await access.check(['2.25.1', '2.25.2'], alice)), { '2.25.1': 'yes', '2.25.2': 'no' });
  assert.deepEqual(Object.fromEntries(await access.check(['2.25.1', '2.25.2'], bob)), { '2.25.1': 'no', '2.25.2': 'yes' });
  assert.equal(calls.length, 2, "bob's answer did not come from alice's cache");
  assert.deepEqual(
    calls.map((c) => c.headers?.cookie),
    ['session=alice', 'session=bob'],
  );
  await access.check(['2.25.1'], callerOf({ cookie: 'session=alice' }));
  assert.equal(calls.length, 2, "alice's verdicts are cached for alice");
});
