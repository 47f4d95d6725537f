/**
 * A layer-4 byte pipe (no HTTP parsing): the floor any proxy written in Node
 * pays for the extra loopback hop. Benchmarks run it as a child process beside
 * the proxy under test to separate "cost of a hop" from "cost of our code".
 *
 *   node --import tsx bench/lib/tcp-pipe.ts <listenPort> <targetHost> <targetPort>
 */
import net from 'node:net';

export function startTcpPipe(listenPort: number, targetHost: string, targetPort: number): net.Server {
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.listen(listenPort, '127.0.0.1');
  return server;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [listen, host, port] = process.argv.slice(2);
  if (!listen || !host || !port) {
    process.stderr.write('usage: tcp-pipe.ts <listenPort> <targetHost> <targetPort>\n');
    process.exit(2);
  }
  startTcpPipe(Number(listen), host, Number(port));
}
