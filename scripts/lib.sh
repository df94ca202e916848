# Shared helpers for scripts/images, scripts/sandbox, scripts/demo, scripts/test and .ci/run.
# Sourced, not executed. Bash only.
# shellcheck shell=bash disable=SC2034  # the SP_* names are used by the scripts that source this file

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
# Where the sandbox's pages arrive (the sandbox host entry's receivers point here).
SP_SMTP_ADDR=127.0.0.1
SP_SMTP_PORT=2525
SP_WEBHOOK_ADDR=127.0.0.1
SP_WEBHOOK_PORT=9798
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

# Debian 12 packages the sandbox, the demo and the end-to-end tests need.
# python3-aiosmtpd: the sandbox's SMTP receiver (/usr/bin/python3 -m aiosmtpd), where mail pages arrive.
SP_PACKAGES=(prometheus prometheus-alertmanager prometheus-node-exporter openssh-server openssh-client docker-registry python3 python3-aiosmtpd iproute2)
# systemd units those packages start on install. The project needs the binaries, not
# these daemons, which would hold the ports of the stack's containers (9090, 9093,
# 9100) and of the sandbox registry (5000); a unit is disabled only when
# sp_ensure_packages itself installed its package.
declare -A SP_PACKAGE_UNITS=(
  [prometheus]=prometheus.service
  [prometheus-alertmanager]=prometheus-alertmanager.service
  [prometheus-node-exporter]=prometheus-node-exporter.service
  [docker-registry]=docker-registry.service
)

# Print those of the named packages that dpkg does not list as installed.
sp_missing_packages() {
  local -A present=()
  local p
  while read -r p; do present[$p]=1; done < <(
    dpkg-query -W -f '${Package} ${db:Status-Status}\n' "$@" 2>/dev/null | awk '$2 == "installed" { print $1 }'
  )
  for p in "$@"; do [[ -n ${present[$p]:-} ]] || printf '%s\n' "$p"; done
}

# sp_ensure_packages [--optional PKG...]: install whatever of SP_PACKAGES (and of the
# optional packages) is missing, quietly, and print one timed line. apt-get update
# runs only when something is missing. Without apt-get, or without root and sudo, a
# missing required package is one error line saying what to run, and exit 2; an
# optional package that cannot be installed is a warning.
sp_ensure_packages() {
  local -a optional=() missing_req=() missing_opt=() as_root=() new_pkgs=() opt_failed=()
  if [[ ${1:-} == --optional ]]; then
    shift
    optional=("$@")
  fi
  local t0 p log
  t0=$(sp_now_ms)
  mapfile -t missing_req < <(sp_missing_packages "${SP_PACKAGES[@]}")
  if ((${#optional[@]})); then mapfile -t missing_opt < <(sp_missing_packages "${optional[@]}"); fi
  if ((${#missing_req[@]} + ${#missing_opt[@]} == 0)); then
    sp_log "packages: all present ($(sp_elapsed "$t0"))"
    return 0
  fi

  local -a all=("${missing_req[@]}" "${missing_opt[@]}")
  local run="apt-get update && apt-get install -y --no-install-recommends ${all[*]}"
  local why=""
  if ! command -v apt-get >/dev/null 2>&1; then
    why="no apt-get on this machine; the scripts expect Debian 12, where root runs"
  elif [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then as_root=(sudo); else why="installing needs root and there is no sudo; as root, run"; fi
  fi
  if [[ -n $why ]]; then
    if ((${#missing_req[@]})); then
      sp_die "Debian packages missing: ${missing_req[*]} ($why: $run)"
    fi
    sp_warn "optional packages missing: ${missing_opt[*]} ($why: $run)"
    return 0
  fi

  log=$(mktemp)
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q update >"$log" 2>&1 || {
    tail -n 5 "$log" >&2
    rm -f "$log"
    sp_die "apt-get update failed (last lines above): check the apt sources and the network, then retry"
  }
  if ((${#missing_req[@]})); then
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends "${missing_req[@]}" >>"$log" 2>&1 || {
      tail -n 5 "$log" >&2
      rm -f "$log"
      sp_die "apt-get install ${missing_req[*]} failed (last lines above); as root, run: $run"
    }
    new_pkgs=("${missing_req[@]}")
  fi
  for p in "${missing_opt[@]}"; do
    if "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends "$p" >>"$log" 2>&1; then
      new_pkgs+=("$p")
    else
      opt_failed+=("$p")
    fi
  done
  rm -f "$log"

  # Keep the daemons of what was just installed from holding the stack's ports.
  local -a new_units=()
  if [[ -d /run/systemd/system ]]; then
    for p in "${new_pkgs[@]}"; do [[ -n ${SP_PACKAGE_UNITS[$p]:-} ]] && new_units+=("${SP_PACKAGE_UNITS[$p]}"); done
    if ((${#new_units[@]})); then "${as_root[@]}" systemctl disable --now "${new_units[@]}" >/dev/null 2>&1 || true; fi
  fi

  sp_log "packages: installed ${new_pkgs[*]:-nothing} in $(sp_elapsed "$t0")${new_units[*]:+ (stopped and disabled ${new_units[*]})}"
  ((${#opt_failed[@]} == 0)) || sp_warn "optional packages not installed: ${opt_failed[*]} (apt-get install -y ${opt_failed[*]} says why)"
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

# True while PID runs. A zombie does not: it has exited and waits to be reaped
# by its parent (for our daemons, PID 1, which may take a second or two).
sp_pid_running() {
  kill -0 "$1" 2>/dev/null || return 1
  [[ $(awk '$1 == "State:" {print $2}' "/proc/$1/status" 2>/dev/null) != Z ]]
}

# Stop PID with TERM, then KILL after a deadline (polls, never a fixed sleep).
sp_stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    sp_pid_running "$pid" || return 0
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
