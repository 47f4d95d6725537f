/**
 * Serve the OHIF v3 viewer against a DICOMweb root:
 *
 *   tsx deploy/ohif/main.ts --dicomweb http://127.0.0.1:8080/dicom-web [--port 3000] [--host 127.0.0.1]
 *
 * Fetches @ohif/app's built dist/ into the cache on first use (deploy/ohif/dist.ts),
 * then serves it with a generated app-config.js (deploy/ohif/app-config.ts).
 * Stops on SIGINT/SIGTERM. Used by `npm start` (deploy/local/run.sh).
 */
import { Command, InvalidArgumentError } from 'commander';
import { ensureOhifDist } from './dist.js';
import { normaliseDicomWebRoot } from './app-config.js';
import { startOhifServer } from './server.js';

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port number 0..65535');
  return n;
}

function root(v: string): string {
  try {
    return normaliseDicomWebRoot(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

const program = new Command('ohif')
  .description('serve the OHIF v3 viewer (npm @ohif/app) against a DICOMweb root')
  .requiredOption('--dicomweb <url>', 'DICOMweb root the viewer uses, e.g. http://127.0.0.1:8080/dicom-web', root)
  .option('--port <n>', 'port to listen on', port, 3000)
  .option('--host <addr>', 'address to bind', '127.0.0.1')
  .option('--cache-dir <dir>', 'where the viewer is unpacked [$CBMIR_CACHE_DIR or ~/.cache/cbmir]')
  .option('--investigational-dialog <when>', "OHIF's investigational-use notice: always|configure|never", 'always');

program.parse();
const o = program.opts<{ dicomweb: string; port: number; host: string; cacheDir?: string; investigationalDialog: string }>();
if (!['always', 'configure', 'never'].includes(o.investigationalDialog)) program.error('--investigational-dialog must be always, configure or never');

const say = (line: string) => process.stdout.write(`${line}\n`);
try {
  const distDir = await ensureOhifDist({ cacheDir: o.cacheDir, log: say });
  const srv = await startOhifServer({
    distDir,
    dicomWebRoot: o.dicomweb,
    host: o.host,
    port: o.port,
    investigationalUseDialog: o.investigationalDialog as 'always' | 'configure' | 'never',
    onRequest: (r) => {
      if (r.status >= 400) say(`${r.method} ${r.path} → ${r.status}`);
    },
  });
  say(`OHIF viewer at ${srv.url}/ (DICOMweb root ${srv.dicomWebRoot})`);
  let stopping = false;
  const stop = (): void => {
    if (stopping) process.exit(1);
    stopping = true;
    void srv.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
} catch (err) {
  process.stderr.write(`ohif: ${(err as Error).message}\n`);
  process.exit(1);
}
