/** Runs make-order: `PROXY_URL=http://localhost:8080 PORT=8000 node dist/examples/make-order/main.js`. */
import { createMakeOrder } from './app.js';

const port = Number(process.env.PORT ?? 8000);
const server = createMakeOrder(process.env.PROXY_URL ?? 'http://localhost:8080');
server.listen(port, process.env.HOST ?? '0.0.0.0', () =>
  process.stdout.write(
    `make-order listening on :${port}, calling dependencies through ${process.env.PROXY_URL ?? 'http://localhost:8080'}\n`,
  ),
);
const stop = (): void => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
