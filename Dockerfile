# syntax=docker/dockerfile:1
# One image for every paygate service. The Helm chart picks the service per
# container with `command: ["node", "dist/<service>.js"]` (gateway, bank,
# credit-bureau, checkout, paycli). Build: deploy/images.sh (make images).
#
# Runs as uid 10001 with a read-only root filesystem: the only writable
# places are the /data volume (SQLite) and an optional /tmp emptyDir.
ARG NODE_IMAGE=node:20-bookworm-slim

# Just the npm manifests, so the `npm ci` layer is reused until they change.
FROM ${NODE_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN find . -type f ! -name package.json ! -name package-lock.json -delete \
 && find . -depth -type d -empty -delete

FROM ${NODE_IMAGE} AS build
# better-sqlite3 installs a prebuilt binary when one matches, else compiles.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY --from=manifests /src/ ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY . .
# Bundles inline our workspace packages; only the native/external modules
# (better-sqlite3, pino, ioredis and their deps) are needed at run time.
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/@paygate node_modules/.bin node_modules/.package-lock.json

FROM ${NODE_IMAGE} AS runtime
RUN groupadd --gid 10001 paygate \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin paygate \
 && mkdir -p /data && chown 10001:10001 /data
ENV NODE_ENV=production \
    NODE_OPTIONS=--enable-source-maps
WORKDIR /app
# package.json says "type": "module", which the ESM bundles need.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
USER 10001:10001
VOLUME ["/data"]
# gateway, bank, checkout, credit-bureau, ops (/metrics, /healthz, /readyz)
EXPOSE 50050 50051 8080 8081 9464
CMD ["node", "dist/gateway.js"]
