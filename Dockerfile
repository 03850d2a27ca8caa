# fleetgate: one image for every role (serve, provisioning, broker, sim); the command picks the role.
# Build: docker build -t fleetgate .      Run: see docker-compose.yml
FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 compiles from source when no prebuilt binary can be fetched.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=dev
COPY bin ./bin
COPY core ./core
COPY registry ./registry
COPY broker ./broker
COPY provisioning ./provisioning
COPY cli ./cli
COPY device-sim ./device-sim
COPY console ./console
COPY tsconfig.base.json ./
RUN npm run build:console

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production FLEETGATE_DATA_DIR=/data
COPY --from=build /app /app
# The data directory holds CA keys (0600): run as the unprivileged node user, which owns it.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8883 8443
ENTRYPOINT ["node", "bin/fleetgate.js"]
CMD ["serve"]
