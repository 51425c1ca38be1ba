#!/usr/bin/env bash
# Make sure the backing services the tests use are running on this machine: PostgreSQL, Redis, InfluxDB 1.x.
# Idempotent: a running service is left alone. Used by .ci/run and by developers (`make services`).
set -euo pipefail

wait_for() {  # wait_for <name> <command...>: up to 30 s for the command to succeed
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "services: $name did not come up" >&2
  return 1
}

# PostgreSQL
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
fi
wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 -q

# Redis
if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for Redis sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG'

# InfluxDB 1.x from Debian's package (its v1 HTTP API is what the project speaks)
if ! command -v influxd >/dev/null 2>&1; then
  echo "services: installing InfluxDB (Debian package influxdb)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq influxdb >/dev/null
fi
if ! curl -sf -o /dev/null http://127.0.0.1:8086/ping; then
  echo "services: starting InfluxDB"
  mkdir -p /var/lib/influxdb /var/log/influxdb
  start-stop-daemon --start --oknodo --background --make-pidfile --pidfile /run/influxd-galfriday.pid \
    --output /var/log/influxdb/galfriday.log --exec /usr/bin/influxd -- -config /etc/influxdb/influxdb.conf
fi
wait_for InfluxDB curl -sf -o /dev/null http://127.0.0.1:8086/ping
echo "services: PostgreSQL, Redis and InfluxDB are up"
