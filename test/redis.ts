/**
 * A real Redis for the fleet's tests (docs/fleet.md): Debian's `redis-server` on a loopback port,
 * no persistence, stopped and started again on the same port when a test asks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { createClient, type RedisClientType } from '@redis/client';

export const REDIS_SERVER = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => existsSync(p));

export interface RunningRedis {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGKILL: as a crash, nothing said to the clients). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Publishes as any client could (garbage included). */
  publish(channel: string, text: string): Promise<void>;
  close(): Promise<void>;
}

/** A TCP port free now, below Linux's ephemeral range so client sockets cannot take it meanwhile. */
async function freePort(): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const s = createServer();
    const ok = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) await new Promise<void>((r) => s.close(() => r()));
    if (ok) return port;
  }
}

/** Starts redis-server on `port`; resolves once it accepts connections, false when it exited (port taken). */
async function launch(port: number): Promise<ChildProcess | undefined> {
  const child = spawn(
    REDIS_SERVER!,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'notice'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const ready = await new Promise<boolean>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) resolve(true);
    });
    child.once('exit', () => resolve(false));
  });
  return ready ? child : undefined;
}

export async function startRedis(): Promise<RunningRedis> {
  let port = 0;
  let child: ChildProcess | undefined;
  for (let i = 0; i < 20 && child === undefined; i++) {
    port = await freePort();
    child = await launch(port);
  }
  if (child === undefined) throw new Error('redis-server would not start');
  let client: RedisClientType | undefined;
  const url = `redis://127.0.0.1:${port}/0`;
  const stop = async (): Promise<void> => {
    if (child === undefined || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
    child = undefined;
  };
  return {
    port,
    url,
    stop,
    async start() {
      for (let i = 0; i < 50 && child === undefined; i++) {
        child = await launch(port);
        if (child === undefined) await new Promise((r) => setTimeout(r, 100)); // the port still in TIME_WAIT's hands
      }
      if (child === undefined) throw new Error(`redis-server would not start again on ${port}`);
    },
    async publish(channel, text) {
      if (client === undefined) {
        client = createClient({ url });
        client.on('error', () => undefined);
        await client.connect();
      }
      await client.publish(channel, text);
    },
    async close() {
      if (client?.isOpen) await client.close().catch(() => client?.destroy());
      client = undefined;
      await stop();
    },
  };
}
