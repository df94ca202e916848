# Shared helpers for scripts/images, scripts/sandbox, scripts/test and .ci/run.
# Sourced, not executed. Bash only.

# The repository root, from the location of this file (works from any cwd).
SP_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Fixed names shared with the rest of the project (see docs/architecture.md "Contracts between the parts").
SP_STATE_ROOT="$SP_REPO/.stackproof"
SP_STATE="$SP_STATE_ROOT/sandbox"
SP_HOSTS="$SP_STATE_ROOT/hosts.yml"
SP_SSH_ADDR=127.0.0.1
SP_SSH_PORT=2222
SP_REG_ADDR=127.0.0.1
SP_REG_PORT=5000
SP_REGISTRY="$SP_REG_ADDR:$SP_REG_PORT"
SP_USER=stackproof
SP_USER_GECOS="stackproof sandbox user (scripts/sandbox)"
SP_REMOTE_DIR=/srv/stackproof-sandbox
SP_DOCKER_SOCKET=/var/run/docker.sock
SP_LABEL_STACK=io.stackproof.stack

# name:tag of the local stand-in images, by service name of the stack manifest.
declare -A SP_IMAGES=(
  [prometheus]=stackproof-local/prometheus:v2.42.0
  [alertmanager]=stackproof-local/alertmanager:v0.25.0
  [node_exporter]=stackproof-local/node-exporter:v1.5.0
  [grafana]=stackproof-local/grafana-double:12.0.2
)

sp_log() { printf '%s %s\n' "[$(date +%H:%M:%S)]" "$*" >&2; }
sp_warn() { printf 'warning: %s\n' "$*" >&2; }
# One-line error that says what and what to do; exit 2 ("could not run").
sp_die() { printf 'error: %s\n' "$*" >&2; exit 2; }

sp_now_ms() { date +%s%3N; }
sp_elapsed() { # start_ms -> "12.3s"
  local d=$(( $(sp_now_ms) - $1 ))
  printf '%d.%ds' $((d / 1000)) $(((d % 1000) / 100))
}

sp_require_root() {
  [[ $EUID -eq 0 ]] || sp_die "$1 must run as root (it creates a user, starts sshd and reads the docker socket): sudo $0 $*"
}

sp_require_docker() {
  command -v docker >/dev/null 2>&1 \
    || sp_die "docker CLI missing: apt-get install -y docker.io (or install Docker Engine)"
  docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 \
    || sp_die "Docker daemon unreachable at ${DOCKER_HOST:-unix://$SP_DOCKER_SOCKET}: start dockerd (or fix DOCKER_HOST) and retry"
}

# sp_require_file PATH PACKAGE: a file a Debian package provides.
sp_require_file() {
  [[ -e $1 ]] || sp_die "$1 missing: install it with apt-get install -y --no-install-recommends $2"
}

# True if PID is alive and its command line contains NEEDLE (literal).
sp_pid_matches() {
  local pid=$1 needle=$2 cmd
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$needle"* ]]
}

# Read a pid file; print the pid if the file holds a number.
sp_read_pid() {
  local f=$1 pid
  [[ -r $f ]] || return 1
  pid=$(tr -dc '0-9' <"$f")
  [[ -n $pid ]] || return 1
  printf '%s' "$pid"
}

# Stop PID with TERM, then KILL after a deadline (polls, never a fixed sleep).
sp_stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# PIDs listening on TCP 127.0.0.1:PORT or *:PORT (empty if none).
sp_listener_pids() {
  ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}

# HTTP GET status code of URL (loopback only). python3 is a prerequisite of
# the sandbox anyway (the host exporter), so no curl dependency.
sp_http_status() {
  /usr/bin/python3 - "$1" <<'PY' 2>/dev/null || echo 000
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
PY
}
