# A swarmlet node image for docker-compose.test.yml (machines with a Docker engine).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends iproute2 procps \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/swarmlet
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY swarmlet ./swarmlet
COPY manager ./manager
COPY scheduler ./scheduler
COPY worker ./worker
COPY net_overlay ./net_overlay
COPY scripts/compose-node.sh /usr/local/bin/compose-node
RUN pip install --no-cache-dir . && chmod +x /usr/local/bin/compose-node
ENV SWARMLET_DATA_DIR=/var/lib/swarmlet
ENTRYPOINT ["compose-node"]
