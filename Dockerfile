# circuit-proxy: multi-stage build. The runtime stage has production dependencies only,
# runs as the unprivileged `node` user, with tini as PID 1 so SIGTERM/SIGHUP reach node.

ARG NODE_IMAGE=node:24.11.1-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY examples ./examples
RUN npx tsc -p tsconfig.json

FROM ${NODE_IMAGE} AS runtime
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
# MALLOC_TRIM_THRESHOLD_ is src/runtime.ts's PROCESS_ENV, which says why; a test keeps it in step.
ENV NODE_ENV=production \
    CIRCUIT_PROXY_CONFIG=/etc/circuit-proxy/proxy.yaml \
    MALLOC_TRIM_THRESHOLD_=67108864
WORKDIR /app
COPY package.json package-lock.json ./
# npm leaves a root-owned compile cache in /tmp that the node user could not write to.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force && rm -rf /tmp/node-compile-cache
COPY --from=build /app/dist ./dist
COPY bin ./bin
# The default config; mount your own at the same path.
COPY config/proxy.yaml /etc/circuit-proxy/proxy.yaml
USER node
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9901/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node directly under tini: npm/npx wrappers would not pass SIGTERM/SIGHUP on (docs/operations.md).
# The Node flags are src/runtime.ts's NODE_FLAGS, which says why; a test keeps
# this line in step.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--no-memory-reducer", "--max-semi-space-size=16", "--initial-old-space-size=64", "--disable-warning=DEP0060", "/app/bin/circuit-proxy.js"]
CMD ["serve"]
