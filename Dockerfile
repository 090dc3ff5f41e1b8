# syntax=docker/dockerfile:1
# jobwire production image: the compiled service, its production dependencies and the SQL
# migrations, run as the unprivileged `node` user. One image serves every role in
# docker-compose.yml: API (the default CMD), migration step and worker (other commands).
#
#   docker build -t jobwire .
#   docker run --rm -e DATABASE_URL=postgres://… -e JWT_SECRET=… -p 3000:3000 jobwire

ARG NODE_IMAGE=node:20-bookworm-slim

# --- builder: all dependencies, TypeScript → dist/ -------------------------------------------
FROM ${NODE_IMAGE} AS builder
WORKDIR /app
COPY package.json package-lock.json ./
# tsc needs no install scripts; skipping them keeps native optional builds out of the image.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# tsconfig.build.json: rootDir "." and outDir dist, so src/main.ts becomes dist/src/main.js.
RUN npm run build

# --- runtime ---------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    NPM_CONFIG_UPDATE_NOTIFIER=false
WORKDIR /app
# package.json also marks the project root: src/project-root.ts walks up from dist/src to it
# and reads migrations/ beside it.
COPY package.json package-lock.json ./
# --omit=optional leaves out embedded-postgres' ~60 MB PostgreSQL binaries (a production
# container always has DATABASE_URL) and pg-cloudflare; no production package needs a script.
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
    && npm cache clean --force
COPY --from=builder /app/dist ./dist
COPY migrations ./migrations
# Files stay root-owned and read-only for the process: it writes nothing to disk.
USER node
EXPOSE 3000
# Liveness only (/healthz); compose checks readiness (/readyz) for the API services.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/src/main.js"]
