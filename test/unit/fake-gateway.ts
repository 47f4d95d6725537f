/**
 * The parts of gateway/server.ts's Gateway that route modules use, for unit tests that attach
 * one route module alone: an express app with a metrics registry, or the virtual-root hook; and
 * the servers around it (a port of its own, a stand-in PACS that reads everything).
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Registry } from 'prom-client';
import type { Gateway, VirtualStudiesHandler } from '../../gateway/server.js';

type CloseHook = () => Promise<void> | void;

/** A Gateway whose routes land on `app`; its close hooks are pushed onto `closeHooks`. */
export function expressGateway(closeHooks: CloseHook[]): { gateway: Gateway; app: express.Express } {
  const app = express();
  const gateway = {
    app,
    metrics: { registry: new Registry() },
    addCloseHook: (h: CloseHook) => void closeHooks.push(h),
  } as unknown as Gateway;
  return { gateway, app };
}

/** A Gateway that keeps the virtual root's handler (attachVirtualRoot) for the test to call. */
export function virtualRootGateway(closeHooks: CloseHook[]): { gateway: Gateway; handler: () => VirtualStudiesHandler } {
  let handler: VirtualStudiesHandler | undefined;
  const gateway = {
    setVirtualStudies: (h: VirtualStudiesHandler) => void (handler = h),
    addCloseHook: (h: CloseHook) => void closeHooks.push(h),
  } as unknown as Gateway;
  return {
    gateway,
    handler: () => {
      if (!handler) throw new Error('attachVirtualRoot did not set a handler');
      return handler;
    },
  };
}

/** A server on an ephemeral loopback port, and its base URL. */
export async function listening(server: http.Server): Promise<{ server: http.Server; port: number; base: string }> {
  if (!server.listening) server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return { server, port, base: `http://127.0.0.1:${port}` };
}

/**
 * A stand-in PACS where every study and instance asked about is there and readable (for tests
 * of routes whose access rules have their own tests), listening; `url` is its DICOMweb root.
 */
export async function readablePacs(): Promise<{ server: http.Server; url: string }> {
  const { server, base } = await listening(
    http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://pacs');
      const studies = u.searchParams.get('StudyInstanceUID')?.split(',') ?? [];
      const found = u.pathname.endsWith('/instances') ? [{}] : studies.map((s) => ({ '0020000D': { vr: 'UI', Value: [s] } }));
      res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(JSON.stringify(found));
    }),
  );
  return { server, url: `${base}/dicom-web` };
}
