/**
 * Where the real services of the test stack are.
 *
 * `npm test` (scripts/test.sh) starts Orthanc (plain and with basic auth),
 * Redis and Elasticsearch on test ports and exports their URLs as
 * CBMIR_TEST_* variables; tests read them here instead of guessing ports.
 * Reading is lazy: importing this module never throws, asking for a URL
 * outside `npm test` does, with a message that says what to run.
 *
 * Run only some files against the stack with
 *   bash scripts/test.sh test/integration/foo.test.ts
 */

export interface BasicAuth {
  readonly user: string;
  readonly password: string;
}

export interface TestStack {
  /** Orthanc root, e.g. http://127.0.0.1:18042 (REST API, for comparing and cleaning up). */
  readonly orthancUrl: string;
  /** Orthanc's DICOMweb root, `${orthancUrl}/dicom-web`. */
  readonly orthancDicomWebUrl: string;
  /** DICOM (DIMSE) port of the plain Orthanc on 127.0.0.1, for C-STORE tests. */
  readonly orthancDicomPort: number;
  /** AE title of the plain Orthanc. */
  readonly orthancAet: string;
  /** A second Orthanc that requires HTTP basic auth. */
  readonly orthancAuthUrl: string;
  readonly orthancAuthDicomWebUrl: string;
  readonly orthancAuth: BasicAuth;
  /** redis://127.0.0.1:16379 */
  readonly redisUrl: string;
  /** http://127.0.0.1:19200 (Elasticsearch 8.19; no GET /, use cluster health). */
  readonly esUrl: string;
  /** Folder for screenshots and other test outputs (git-ignored). */
  readonly artifactsDir: string;
}

export class TestStackMissingError extends Error {
  constructor(readonly variable: string) {
    super(
      `${variable} is not set: this test needs the real test stack (Orthanc, Redis, Elasticsearch). ` +
        'Run it through `npm test` (all suites) or `bash scripts/test.sh <file.test.ts>` (one file), ' +
        'which start the stack and export the CBMIR_TEST_* variables.',
    );
    this.name = 'TestStackMissingError';
  }
}

function required(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (value === undefined || value.trim() === '') throw new TestStackMissingError(name);
  return value.trim();
}

function stripSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

function parseAuth(name: string, value: string): BasicAuth {
  const i = value.indexOf(':');
  if (i <= 0 || i === value.length - 1) throw new Error(`${name} must be user:password`);
  return Object.freeze({ user: value.slice(0, i), password: value.slice(i + 1) });
}

function parsePort(name: string, value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${name} must be a port number, got ${value}`);
  return port;
}

/** Read the stack description from the environment (throws TestStackMissingError if absent). */
export function readTestStack(env: NodeJS.ProcessEnv = process.env): TestStack {
  const orthancUrl = stripSlash(required(env, 'CBMIR_TEST_ORTHANC_URL'));
  const orthancAuthUrl = stripSlash(required(env, 'CBMIR_TEST_ORTHANC_AUTH_URL'));
  return Object.freeze({
    orthancUrl,
    orthancDicomWebUrl: `${orthancUrl}/dicom-web`,
    orthancDicomPort: parsePort('CBMIR_TEST_ORTHANC_DICOM_PORT', required(env, 'CBMIR_TEST_ORTHANC_DICOM_PORT')),
    orthancAet: env.CBMIR_TEST_ORTHANC_AET?.trim() || 'ORTHANC',
    orthancAuthUrl,
    orthancAuthDicomWebUrl: `${orthancAuthUrl}/dicom-web`,
    orthancAuth: parseAuth('CBMIR_TEST_ORTHANC_AUTH', required(env, 'CBMIR_TEST_ORTHANC_AUTH')),
    redisUrl: required(env, 'CBMIR_TEST_REDIS_URL'),
    esUrl: stripSlash(required(env, 'CBMIR_TEST_ES_URL')),
    artifactsDir: env.CBMIR_TEST_ARTIFACTS?.trim() || 'test-artifacts',
  });
}

let cached: TestStack | undefined;

/** The test stack of this run (read once). */
export function testStack(): TestStack {
  cached ??= readTestStack();
  return cached;
}

/** `Authorization` header value for the auth-protected Orthanc. */
export function orthancAuthHeader(auth: BasicAuth = testStack().orthancAuth): string {
  return `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString('base64')}`;
}
