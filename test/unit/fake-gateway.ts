/**
 * The parts of gateway/server.ts's Gateway that route modules use, for unit tests that attach
 * one route module alone: an express app with a metrics registry, or the virtual-root hook.
 */
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
