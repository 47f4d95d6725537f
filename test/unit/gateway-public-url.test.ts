import assert from 'node:assert/strict';
import { test } from 'node:test';
import { derivePublicBase, fallbackHost, isWildcardAddress } from '../../gateway/public-url.js';

test('host names with "_" and "~" (Docker service names) are used as sent', () => {
  for (const host of ['cbmir_gateway:8080', 'a_b', 'gw~1.example:443', 'GW.example', '[::1]:8080']) {
    assert.equal(derivePublicBase({ host }, 'fallback:1').base, `http://${host}`, host);
  }
  assert.equal(derivePublicBase({ host: 'x', 'x-forwarded-host': 'dicom_gw.example' }, 'fallback:1').host, 'dicom_gw.example');
});

test('a host that could break a URL, JSON or Forwarded is replaced by the fallback', () => {
  for (const host of ['a;proto=x', 'a,b', 'a"b', 'a/b', 'a?b', 'a#b', 'user@a', 'a b', 'a\\b', '', 'a:b:c', '[::1']) {
    assert.equal(derivePublicBase({ host }, 'fallback:1').host, 'fallback:1', JSON.stringify(host));
  }
});

test('bound to a wildcard, the fallback is the address the connection came in on, never the wildcard', () => {
  assert.deepEqual(['0.0.0.0', '::', '[::]', '0:0:0:0:0:0:0:0', '127.0.0.1', '::1', 'localhost'].map(isWildcardAddress), [
    true,
    true,
    true,
    true,
    false,
    false,
    false,
  ]);
  assert.equal(fallbackHost('0.0.0.0', 8080, { localAddress: '10.1.2.3', localPort: 8080 }), '10.1.2.3:8080');
  assert.equal(fallbackHost('::', 8080, { localAddress: '::ffff:10.1.2.3', localPort: 8080 }), '10.1.2.3:8080');
  assert.equal(fallbackHost('::', 8080, { localAddress: 'fd00::5', localPort: 8080 }), '[fd00::5]:8080');
  assert.equal(fallbackHost('[::]', 8080, {}), 'localhost:8080');
  assert.equal(fallbackHost('127.0.0.1', 8080, { localAddress: '127.0.0.1', localPort: 8080 }), '127.0.0.1:8080');
  assert.equal(fallbackHost('::1', 8080, { localAddress: '::1', localPort: 8080 }), '[::1]:8080');
  assert.equal(fallbackHost('gw.local', 8080, { localAddress: '10.1.2.3', localPort: 8080 }), 'gw.local:8080');
});
