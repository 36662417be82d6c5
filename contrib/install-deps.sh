#!/bin/sh
# Install everything pgscope needs to build, test, benchmark and run its demo
# on Debian 12 (bookworm), as root. Idempotent.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    build-essential autoconf automake libtool pkg-config clang libclang-rt-14-dev \
    libevent-dev libssl-dev libpq-dev libsqlite3-dev libjansson-dev libcmocka-dev \
    libpg-query-dev libprotobuf-c-dev \
    postgresql-15 postgresql-15-hypopg postgresql-client-15 pgbouncer \
    postgresql-server-dev-15 dpkg-dev \
    python3 python3-psycopg2 python3-psycopg python3-asyncpg sqlite3 openssl procps iproute2 ca-certificates git \
    python3-django python3-sqlalchemy ruby-activerecord ruby-pg python3-markdown cmark-gfm libxml2-utils python3-pytest \
    chromium python3-websocket \
    >/dev/null
# The Debian postgresql package starts a default cluster; pgscope's scripts use
# their own scratch clusters and never touch it.

# node-postgres and Sequelize, pinned by tests/integration/node/package-lock.json, for the tests
# that drive real Node.js clients and ORMs through pgscope (the ORM matrix: tests/integration/orm).
# Node.js comes from Debian when the machine has none.
if ! command -v npm >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
(cd "$(dirname "$0")/../tests/integration/node" && npm ci --no-audit --no-fund --loglevel=error)
