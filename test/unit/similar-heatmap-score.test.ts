/**
 * GET /similar/heatmap's answer (gateway/similar-heatmap.ts) with a stand-in heatmap job: the
 * score is /similar's (clamped to [0, 1], 6 decimals) even when the float32 dot product of two
 * unit vectors passes ±1, and the answer has the shape docs/openapi.json's HeatmapAnswer gives.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http, { type Server } from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import { loadConfig } from '../../core/config.js';
import type { VectorIndex } from '../../core/index/types.js';
import type { HeatmapJobData, HeatmapJobResult } from '../../core/jobs.js';
import { createLogger } from '../../core/log.js';
import type { Gateway } from '../../gateway/server.js';
import type { AccessChecker } from '../../gateway/similar-access.js';
import { attachSimilarHeatmap } from '../../gateway/similar-heatmap.js';
import { repoRoot } from '../helpers/fixtures.js';
import { listening } from './fake-gateway.js';

interface Schema {
  type?: 'object' | 'array' | 'string' | 'number' | 'integer';
  enum?: unknown[];
  pattern?: string;
  maxLength?: number;
  items?: Schema;
  required?: string[];
  properties?: Record<string, Schema>;
  minimum?: number;
  maximum?: number;
}

const isObject = (v: unknown): boolean => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v: unknown): boolean => typeof v === 'string';

const UIDS =
  'StudyInstanceUID=1.2&SeriesInstanceUID=1.2.3&SOPInstanceUID=1.2.3.4' +
  '&ResultStudyInstanceUID=1.5&ResultSeriesInstanceUID=1.5.6&ResultSOPInstanceUID=1.5.6.7';

/**
 * Types, enums, patterns, lengths and bounds as given, required keys present, no key the schema
 * does not name, array items each checked: what a client relying on the schema needs.
 */
function conforms(value: unknown, schema: Schema, where = 'answer'): void {
  const kinds = { object: isObject, array: Array.isArray, string: isString, number: Number.isFinite, integer: Number.isInteger };
  if (schema.type) assert.ok(kinds[schema.type](value), `${where} ${JSON.stringify(value)} is not of type ${schema.type}`);
  if (schema.enum) assert.ok(schema.enum.includes(value), `${where} ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if (schema.pattern !== undefined) assert.match(String(value), new RegExp(schema.pattern), where);
  if (schema.maxLength !== undefined) assert.ok(String(value).length <= schema.maxLength, `${where} is longer than ${schema.maxLength}`);
  if (schema.minimum !== undefined) assert.ok((value as number) >= schema.minimum, `${where} ${String(value)} < ${schema.minimum}`);
  if (schema.maximum !== undefined) assert.ok((value as number) <= schema.maximum, `${where} ${String(value)} > ${schema.maximum}`);
  if (schema.items) (value as unknown[]).forEach((v, i) => conforms(v, schema.items!, `${where}[${i}]`));
  if (!schema.properties) return;
  assert.ok(isObject(value), `${where} is not an object`);
  const obj = value as Record<string, unknown>;
  for (const k of schema.required ?? []) assert.ok(k in obj, `${where}.${k} is required`);
  for (const [k, v] of Object.entries(obj)) {
    assert.ok(schema.properties[k], `${where}.${k} is not in the schema`);
    conforms(v, schema.properties[k]!, `${where}.${k}`);
  }
}

describe('/similar/heatmap answer', () => {
  let similarity = 0;
  let server: Server;
  let base = '';
  const closeHooks: Array<() => Promise<void> | void> = [];

  before(async () => {
    const app = express();
    const gateway = { app, addCloseHook: (h: () => Promise<void> | void) => void closeHooks.push(h) } as unknown as Gateway;
    const requester = {
      request: async (d: HeatmapJobData): Promise<HeatmapJobResult> => ({
        status: 'heatmap',
        modelVersion: d.modelVersion,
        similarity,
        // Not square: rows and columns swapped would show.
        height: 2,
        width: 3,
        query: [0.1234567, -0.2, 0, 0.5, 0.25, -0.75],
        result: [0.3, 0, -0.1, 0.25, 0.125, -0.5],
      }),
      close: async () => undefined,
    };
    // Every study and instance readable: the access rules have their own tests.
    const access = { requireReadable: async () => undefined, requireInstance: async () => undefined } as unknown as AccessChecker;
    const index = { liveVersion: async () => 'v1' } as unknown as VectorIndex;
    attachSimilarHeatmap(gateway, {
      config: loadConfig({}),
      access,
      index,
      modelVersion: 'v1',
      logger: createLogger('silent', 'test'),
      requester,
    });
    ({ server, base } = await listening(http.createServer(app)));
  });

  after(async () => {
    server.close();
    for (const h of closeHooks) await h();
  });

  const heatmap = async (s: number) => {
    similarity = s;
    const r = await fetch(`${base}/similar/heatmap?${UIDS}`);
    assert.equal(r.status, 200);
    return (await r.json()) as { similarity: number; score: number } & Record<string, unknown>;
  };

  test('score and similarity stay in [0, 1] and [−1, 1] past a float32 hair, rounded to 6 decimals as /similar’s', async () => {
    for (const [s, similarityWanted, scoreWanted] of [
      [1.0000001, 1, 1],
      [-1.0000002, -1, 0],
      [0.88912345678, 0.889123, 0.944562],
      [0, 0, 0.5],
    ] as const) {
      const hm = await heatmap(s);
      assert.equal(hm.similarity, similarityWanted, `similarity of ${s}`);
      assert.equal(hm.score, scoreWanted, `score of ${s}`);
    }
  });

  test('the answer is what docs/openapi.json’s HeatmapAnswer describes', async () => {
    const doc = JSON.parse(readFileSync(path.join(repoRoot, 'docs', 'openapi.json'), 'utf8')) as {
      paths: Record<string, Record<string, { responses: Record<string, { content: Record<string, { schema: { $ref: string } }> }> }>>;
      components: { schemas: Record<string, Schema> };
    };
    for (const method of ['get', 'post']) {
      const ref = doc.paths['/similar/heatmap']?.[method]?.responses['200']?.content['application/json']?.schema.$ref;
      assert.equal(ref, '#/components/schemas/HeatmapAnswer', method);
    }
    const answer = await heatmap(0.5);
    conforms(answer, doc.components.schemas.HeatmapAnswer!);
    // The whole answer the stand-in job implies: its 2 × 3 row-major grids as rows (6 significant
    // digits), the UIDs asked, the score (1 + 0.5) / 2 and the live model version.
    assert.deepEqual(answer, {
      query: {
        studyInstanceUid: '1.2',
        seriesInstanceUid: '1.2.3',
        sopInstanceUid: '1.2.3.4',
        source: 'archive',
        grid: [
          [0.123457, -0.2, 0],
          [0.5, 0.25, -0.75],
        ],
      },
      result: {
        studyInstanceUid: '1.5',
        seriesInstanceUid: '1.5.6',
        sopInstanceUid: '1.5.6.7',
        source: 'archive',
        grid: [
          [0.3, 0, -0.1],
          [0.25, 0.125, -0.5],
        ],
      },
      similarity: 0.5,
      score: 0.75,
      modelVersion: 'v1',
      height: 2,
      width: 3,
    });
  });
});
