/** Runs one demo upstream: `node dist/examples/demo/service.js <name> [port]` (docker-compose uses this). */
import { DemoService, SERVICE_NAMES, type ServiceName } from './services.js';

const name = process.argv[2] as ServiceName;
if (!SERVICE_NAMES.includes(name)) {
  process.stderr.write(`usage: service.js <${SERVICE_NAMES.join('|')}> [port]\n`);
  process.exit(2);
}
const svc = new DemoService(name, Number(process.argv[3] ?? process.env.PORT ?? 8000), process.env.HOST ?? '0.0.0.0');
await svc.start();
process.stdout.write(`${name}-service listening on :${svc.port}\n`);
const stop = (): void => void svc.stop().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
