#!/usr/bin/env bash
# Real servers for the scale-out tests, installed from Debian when missing:
#   PostgreSQL 15, and OpenStack Swift with s3api + tempauth as the S3-compatible store
#   (single node on 127.0.0.1, path-style, region us-east-1).
#
#   servers.sh start STATE_DIR   start both on free ports; prints KEY=VALUE lines
#                                (also kept in STATE_DIR/env)
#   servers.sh stop STATE_DIR    stop them and remove STATE_DIR
#   servers.sh install           only install what is missing (Java 17 for Spark too);
#                                without root or apt it says so and leaves it to the tests
#
# Runs unattended (no stdin). Installing needs root and apt; the servers run as the
# calling user (PostgreSQL as 'postgres' when called as root, since it refuses root).
set -euo pipefail

cmd=${1:?usage: servers.sh start|stop STATE_DIR | install}
state=${2:-}
PG_BIN=/usr/lib/postgresql/15/bin
SWIFT_PACKAGES=(swift swift-proxy swift-account swift-container swift-object)

log() { echo "servers.sh: $*" >&2; }

install_missing() {
  local missing=()
  [[ -x $PG_BIN/initdb ]] || missing+=(postgresql-15)
  command -v swift-proxy-server >/dev/null || missing+=("${SWIFT_PACKAGES[@]}")
  /usr/bin/python3 -c "import swift.common.ring" 2>/dev/null || missing+=(swift)
  command -v memcached >/dev/null || missing+=(memcached)  # tempauth keeps its tokens there
  if [[ ${1:-} == with-java ]] && ! java -version 2>&1 | grep -q 'version "17'; then
    missing+=(openjdk-17-jre-headless)  # Spark jobs
  fi
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    log "missing ${missing[*]} and cannot install them (needs root and apt-get)"
    exit 3
  fi
  log "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  # Packages must not start their own services (no systemd in CI containers anyway).
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  apt-get -o DPkg::Lock::Timeout=600 update -q >&2
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2
  ((created_policy)) && rm -f "$policy"
  return 0
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() {  # url seconds
  python3 - "$1" "$2" <<'EOF'
import sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(url, timeout=1).read()
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit(1)
EOF
}

start_postgres() {
  local dir=$state/pg port password
  port=$(free_port)
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  mkdir -p "$dir"
  printf '%s\n' "$password" >"$dir/pwfile"
  local as=()
  if [[ $(id -u) == 0 ]]; then
    chown -R postgres:postgres "$dir"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$PG_BIN/initdb" -D "$dir/data" -U vitrine --pwfile="$dir/pwfile" \
    -A scram-sha-256 -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 4; }
  rm -f "$dir/pwfile"
  # Test data only: durability is traded for speed.
  "${as[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    >&2 || { cat "$dir/server.log" >&2; exit 4; }
  echo "VITRINE_TEST_PG_URL=postgresql+psycopg://vitrine:$password@127.0.0.1:$port/postgres"
}

write_server_conf() {  # name port
  cat >"$state/swift/$1-server.conf" <<EOF
[DEFAULT]
devices = $state/swift/srv
mount_check = false
bind_ip = 127.0.0.1
bind_port = $2
workers = 0
user = $(id -un)
swift_dir = $state/swift
log_level = WARNING

[pipeline:main]
pipeline = $1-server

[app:$1-server]
use = egg:swift#$1
EOF
}

start_swift() {
  local dir=$state/swift kind port proxy_port memcache_port
  mkdir -p "$dir/srv/d1"
  if [[ ! -f /etc/swift/swift.conf ]]; then  # swift reads its hash settings only from here
    mkdir -p /etc/swift
    printf '[swift-hash]\nswift_hash_path_suffix = %s\n\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n' \
      "$(python3 -c 'import secrets; print(secrets.token_hex(8))')" >/etc/swift/swift.conf
  fi
  local rings=()
  for kind in account container object; do
    port=$(free_port)
    write_server_conf "$kind" "$port"
    rings+=("$kind:$port")
  done
  # One ring per server kind, one device each (what swift-ring-builder does, in one process).
  /usr/bin/python3 - "$dir" "${rings[@]}" <<'EOF'
import sys
from swift.common.ring import RingBuilder
for spec in sys.argv[2:]:
    kind, port = spec.split(":")
    builder = RingBuilder(6, 1, 1)
    builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port),
                     "device": "d1", "weight": 100})
    builder.rebalance()
    builder.get_ring().save(f"{sys.argv[1]}/{kind}.ring.gz")
EOF
  memcache_port=$(free_port)
  nohup memcached -u "$(id -un)" -l 127.0.0.1 -p "$memcache_port" -U 0 -m 64 >"$dir/memcached.log" 2>&1 &
  echo $! >>"$state/pids"
  proxy_port=$(free_port)
  cat >"$dir/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $proxy_port
workers = 0
user = $(id -un)
swift_dir = $dir
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$memcache_port

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
EOF
  for kind in account container object proxy; do
    nohup "swift-$kind-server" "$dir/$kind-server.conf" --verbose >"$dir/$kind.log" 2>&1 &
    echo $! >>"$state/pids"
  done
  if ! wait_http "http://127.0.0.1:$proxy_port/healthcheck" 60; then
    tail -n 30 "$dir"/*.log >&2
    exit 5
  fi
  echo "VITRINE_TEST_S3_ENDPOINT=http://127.0.0.1:$proxy_port"
  echo "VITRINE_TEST_S3_ACCESS_KEY=test:tester"
  echo "VITRINE_TEST_S3_SECRET_KEY=testing"
  echo "VITRINE_TEST_S3_REGION=us-east-1"
}

stop_all() {
  if [[ -f $state/pids ]]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$state/pids"
  fi
  if [[ -d $state/pg/data ]]; then
    local as=()
    [[ $(id -u) == 0 ]] && as=(runuser -u postgres --)
    "${as[@]}" "$PG_BIN/pg_ctl" -D "$state/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$state"
}

case $cmd in
  install)
    if ! (install_missing with-java); then
      log "could not install the test servers; their tests will fail (VITRINE_TEST_SERVERS=off skips them)"
    fi
    exit 0
    ;;
  start)
    [[ -n $state ]] || { log "usage: servers.sh start STATE_DIR"; exit 2; }
    install_missing
    mkdir -p "$state"
    chmod 755 "$state"
    trap 'stop_all' ERR
    { start_postgres; start_swift; } | tee "$state/env"
    ;;
  stop)
    [[ -n $state ]] || { log "usage: servers.sh stop STATE_DIR"; exit 2; }
    stop_all
    ;;
  *) log "unknown command $cmd"; exit 2 ;;
esac
