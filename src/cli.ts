import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { configJsonSchema } from './config/json-schema.js';
import type { LevelWithSilent } from 'pino';
import { ExitCode } from './errors.js';
import { LOG_LEVELS } from './log.js';
import { DEFAULT_CONFIG, serve, validate } from './main.js';
import { status } from './status.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

function port(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 65535) throw new InvalidArgumentError('must be an integer from 0 to 65535.');
  return Number(value);
}

interface ServeFlags {
  config?: string;
  port?: number;
  adminPort?: number;
  logLevel: LevelWithSilent;
  pretty?: boolean;
  accessLog?: boolean;
  adminToken?: string;
}

/** Builds the program. The only place that knows commander; `run` is the only place that exits. */
export function buildProgram(onExit: (code: number) => void): Command {
  const program = new Command('circuit-proxy')
    .description('Sidecar reverse proxy with a circuit breaker per upstream service')
    .version(pkg.version, '-V, --version')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');

  const configOption = () => new Option('-c, --config <path>', 'config file').env('CIRCUIT_PROXY_CONFIG').default(DEFAULT_CONFIG);

  program
    .command('serve', { isDefault: true })
    .description('run the proxy (default command)')
    .addOption(configOption())
    .option('-p, --port <n>', 'proxy port (overrides listen.port)', port)
    .option('--admin-port <n>', 'admin port (overrides admin.port)', port)
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('info').env('CIRCUIT_PROXY_LOG_LEVEL'))
    .option('--pretty', 'human-readable logs (needs pino-pretty installed)')
    .option('--access-log', 'one log line per request')
    .addOption(new Option('--admin-token <token>', 'bearer token required for admin actions').env('CIRCUIT_PROXY_ADMIN_TOKEN'))
    .exitOverride()
    .action(async (flags: ServeFlags) => {
      onExit(
        await serve({
          config: flags.config ?? DEFAULT_CONFIG,
          overrides: {
            ...(flags.port !== undefined ? { port: flags.port } : {}),
            ...(flags.adminPort !== undefined ? { adminPort: flags.adminPort } : {}),
          },
          logLevel: flags.logLevel,
          pretty: flags.pretty === true,
          accessLog: flags.accessLog === true,
          adminToken: flags.adminToken,
        }),
      );
    });

  program
    .command('validate')
    .description('check a config file and print the resolved services')
    .addOption(configOption())
    .exitOverride()
    .action((flags: { config: string }) => onExit(validate(flags.config, {})));

  program
    .command('schema')
    .description("print the config's JSON Schema (draft 2020-12), for editors and CI (docs/configuration.md)")
    .exitOverride()
    .action(() => {
      process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
      onExit(ExitCode.ok);
    });

  program
    .command('status')
    .description('breaker table of a running proxy (exit 0 all closed, 3 any open, 1 unreachable)')
    .addOption(new Option('--admin-url <url>', 'admin listener URL').env('CIRCUIT_PROXY_ADMIN_URL').default('http://127.0.0.1:9901'))
    .option('--json', 'print JSON instead of a table')
    .option('-w, --watch', 'redraw the table every second until Ctrl-C')
    .exitOverride()
    .action(async (flags: { adminUrl: string; json?: boolean; watch?: boolean }) => {
      onExit(
        await status({
          adminUrl: flags.adminUrl,
          json: flags.json === true,
          watch: flags.watch === true,
          color: process.stdout.isTTY === true && !process.env.NO_COLOR,
        }),
      );
    });

  return program;
}

/** Entry point of the `circuit-proxy` bin. */
export async function run(argv: readonly string[]): Promise<void> {
  // `circuit-proxy validate | head`: a reader that goes away is not an error worth a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? ExitCode.ok);
    throw err;
  });
  const exit = (code: number): void => {
    process.exitCode = code;
    // Listeners (servers) are closed by now; exit explicitly so stray keep-alive timers cannot hold us,
    // once stdout has taken all that was written: a pipe is written asynchronously, and exiting
    // earlier cut `circuit-proxy schema | wc -c` at the pipe's 64 KiB.
    process.stdout.write('', () => setImmediate(() => process.exit(code)));
  };
  try {
    await buildProgram(exit).parseAsync([...argv]);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander exits 1 on usage errors; ours is 2 (docs/operations.md). Help and version are 0.
      exit(err.exitCode === 0 ? ExitCode.ok : ExitCode.usage);
      return;
    }
    process.stderr.write(`circuit-proxy: ${(err as Error).stack ?? String(err)}\n`);
    exit(ExitCode.runtime);
  }
}
