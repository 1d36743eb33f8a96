# syntax=docker/dockerfile:1
# The shardkv image: one image, three roles. The command picks the role:
#   docker run ... shardkv:local node --data-dir /data --port 7001 ...
#   docker run ... shardkv:local router --port 8080 ...
#   docker run ... shardkv:local coordinator --port 8090 ...
# FROM names a Debian bookworm base with Node >= 20.18.1 on PATH (node, npm, and Node's headers for
# node-gyp). deploy/base-image/build.sh builds it from Debian packages where no image registry is
# reachable; elsewhere any such image tagged shardkv-base:bookworm serves (see docs/deployment.md).
ARG BASE=shardkv-base:bookworm

# --- build: dev dependencies, the toolchain better-sqlite3 compiles with, tsc --------------------
FROM ${BASE} AS build
LABEL shardkv.stage=build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# The dashboard's static files live beside its compiled code, where it looks first.
RUN npx tsc -p tsconfig.json \
 && for part in router coordinator; do \
      if [ -d "$part/dashboard/public" ]; then cp -r "$part/dashboard/public" "dist/$part/dashboard/"; fi; \
    done \
 && npm prune --omit=dev --no-audit --no-fund

# --- runtime: production dependencies (better-sqlite3 as compiled above) and dist/ only -------------
FROM ${BASE}
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home shardkv \
 && mkdir -p /data && chown shardkv:shardkv /data
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/bin ./bin
RUN ln -s /app/bin/shardkv.js /usr/local/bin/shardkv && chmod 0755 /app/bin/shardkv.js
USER shardkv
# Every role keeps its state under /data (a shard node's SQLite file, a coordinator's map).
VOLUME /data
ENV SHARDKV_LOG_LEVEL=info
# Liveness only: the process answers /healthz on the port its command line names (bin/shardkv.js).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["shardkv", "healthcheck"]
ENTRYPOINT ["shardkv"]
CMD ["--help"]
