import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpProblem } from '../../core/errors.js';
import { MethodNotAllowed } from '../../gateway/problem.js';
import { allowedMethods, matchDicomweb } from '../../gateway/routes.js';

const seg = (p: string): string[] => p.split('/');
const cls = (method: string, p: string): string | null => matchDicomweb(method, seg(p))?.route.routeClass ?? null;
const problem = (method: string, p: string): string => {
  try {
    matchDicomweb(method, seg(p));
    return 'none';
  } catch (e) {
    assert.ok(e instanceof HttpProblem);
    return e.code;
  }
};

test('QIDO, WADO-RS, rendered, thumbnail, bulk and STOW resources map to their class', () => {
  assert.equal(cls('GET', 'studies'), 'qido');
  assert.equal(cls('GET', 'studies/1.2/series'), 'qido');
  assert.equal(cls('GET', 'studies/1.2/series/1.3/instances'), 'qido');
  assert.equal(cls('GET', 'studies/1.2/instances'), 'qido');
  assert.equal(cls('GET', 'series'), 'qido');
  assert.equal(cls('GET', 'instances'), 'qido');
  assert.equal(cls('GET', 'studies/1.2'), 'wado');
  assert.equal(cls('GET', 'studies/1.2/series/1.3/instances/1.4'), 'wado');
  assert.equal(cls('GET', 'studies/1.2/series/1.3/metadata'), 'metadata');
  assert.equal(cls('GET', 'studies/1.2/series/1.3/instances/1.4/frames/1,2,3'), 'frames');
  assert.equal(cls('GET', 'studies/1.2/series/1.3/instances/1.4/frames/2/rendered'), 'rendered');
  assert.equal(cls('GET', 'studies/1.2/rendered'), 'rendered');
  assert.equal(cls('GET', 'studies/1.2/series/1.3/thumbnail'), 'thumbnail');
  assert.equal(cls('GET', 'studies/1.2/series/1.3/instances/1.4/bulk/7fe00010'), 'bulkdata');
  assert.equal(cls('GET', 'studies/1.2/series/1.3/instances/1.4/bulk/52009229/1/002110fe/1/00211019'), 'bulkdata');
  assert.equal(cls('POST', 'studies'), 'stow');
  assert.equal(cls('POST', 'studies/1.2'), 'stow');
});

test('captured study UID is returned for STOW hooks', () => {
  assert.equal(matchDicomweb('POST', seg('studies/1.2.840.1'))?.params.study, '1.2.840.1');
});

test('HEAD matches where GET does, and nowhere else', () => {
  assert.equal(cls('HEAD', 'studies'), 'qido');
  assert.equal(cls('HEAD', 'studies/1.2/series/1.3/instances/1.4'), cls('GET', 'studies/1.2/series/1.3/instances/1.4'));
  assert.equal(problem('HEAD', 'studies/1..2'), 'BAD_UID', 'validated as GET is');
  assert.equal(problem('DELETE', 'studies/1.2'), 'METHOD_NOT_ALLOWED');
});

test('resources outside the table do not match', () => {
  assert.equal(cls('GET', 'servers'), null);
  assert.equal(cls('GET', 'info'), null);
  assert.equal(cls('GET', 'studies/1.2/series/1.3/instances/1.4/bulk/system'), null);
  assert.equal(cls('GET', 'studies/1.2/whatever'), null);
});

test('wrong method on a known resource is 405; bad UIDs and frame lists are 400', () => {
  assert.equal(problem('DELETE', 'studies/1.2'), 'METHOD_NOT_ALLOWED');
  assert.equal(problem('PUT', 'studies'), 'METHOD_NOT_ALLOWED');
  assert.equal(problem('POST', 'studies/1.2/series'), 'METHOD_NOT_ALLOWED');
  assert.equal(problem('GET', 'studies/1.2a'), 'BAD_UID');
  assert.equal(problem('GET', `studies/${'1'.repeat(65)}`), 'BAD_UID');
  assert.equal(problem('GET', 'studies/1.2/series/1.3/instances/1.4/frames/0'), 'BAD_PARAM');
  assert.equal(problem('GET', 'studies/1.2/series/1.3/instances/1.4/frames/1,,2'), 'BAD_PARAM');
});

test('a 405 carries the methods the resource serves (HEAD with GET, OPTIONS always); OPTIONS lists the same', () => {
  const allowOf = (method: string, p: string): string => {
    try {
      matchDicomweb(method, seg(p));
    } catch (e) {
      assert.ok(e instanceof MethodNotAllowed, `${method} ${p}`);
      assert.equal(e.code, 'METHOD_NOT_ALLOWED');
      return e.allow.join(', ');
    }
    return 'matched';
  };
  assert.equal(allowOf('DELETE', 'studies/1.2'), 'GET, HEAD, POST, OPTIONS');
  assert.equal(allowOf('PUT', 'studies'), 'GET, HEAD, POST, OPTIONS');
  assert.equal(allowOf('POST', 'studies/1.2/series'), 'GET, HEAD, OPTIONS');
  assert.equal(allowOf('POST', 'studies/1.2/series/1.3/instances/1.4/frames/1'), 'GET, HEAD, OPTIONS');
  assert.equal(allowOf('POST', 'studies/1.2/series/1.3/instances/1.4/bulk/7fe00010'), 'GET, HEAD, OPTIONS');
  assert.deepEqual(allowedMethods(seg('studies/1.2/series/1.3/metadata')), ['GET', 'HEAD', 'OPTIONS']);
  assert.deepEqual(allowedMethods(seg('studies')), ['GET', 'HEAD', 'POST', 'OPTIONS']);
  assert.deepEqual(allowedMethods(seg('studies'), true), ['GET', 'HEAD', 'OPTIONS'], 'a virtual root stores nothing');
  assert.deepEqual(allowedMethods(seg('servers')), []);
  assert.deepEqual(allowedMethods([]), []);
});
