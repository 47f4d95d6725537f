/** Start a helper process for a benchmark and wait until it answers on an HTTP URL. */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { request } from 'undici';
import { onInterrupt } from './interrupt.js';

export interface StartedChild {
  readonly child: ChildProcess;
  /** Last lines of its stderr/stdout, for error messages. */
  tail(): string;
  stop(): Promise<void>;
}

/** Whether something already accepts connections on 127.0.0.1:port. */
export function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * stop(): SIGTERM, then SIGKILL after graceMs; resolves once the process has exited.
 * Also run if the benchmark is interrupted first (bench/lib/interrupt.ts).
 */
export function stopper(child: ChildProcess, graceMs: number): () => Promise<void> {
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    forget();
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    }
  };
  const forget = onInterrupt(stop);
  return stop;
}

export async function startChild(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; readyUrl: string; timeoutMs?: number },
): Promise<StartedChild> {
  // Something else answering on the port would pass the readiness probe and be measured instead.
  const port = Number(new URL(opts.readyUrl).port);
  if (port && (await portInUse(port))) throw new Error(`port ${port} is already in use; choose another (see the benchmark's settings)`);
  const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const started: StartedChild = { child, tail: () => out, stop: stopper(child, 10_000) };
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${cmd} exited with ${child.exitCode}:\n${out}`);
    try {
      const r = await request(opts.readyUrl, { headersTimeout: 1000, bodyTimeout: 1000 });
      await r.body.dump();
      if (r.statusCode < 500 && child.exitCode === null) return started;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await started.stop();
  throw new Error(`${cmd} did not answer on ${opts.readyUrl} in time:\n${out}`);
}
