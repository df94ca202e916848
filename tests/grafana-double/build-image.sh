#!/usr/bin/env bash
# Builds the local image stackproof-local/grafana-double:12.0.2: the
# grafana-double release binary plus the shared libraries it needs, laid out
# like grafana/grafana:12.0.2 (port 3000, user 472, GF_PATHS_* env,
# /etc/grafana/provisioning, /var/lib/grafana, entrypoint /run.sh).
# It is a TEST DOUBLE, not Grafana (see tests/grafana-double/README.md).
#
# No base image can be pulled here, so the root filesystem is assembled in a
# temp dir and `docker import`ed. A rebuild with nothing changed skips the
# import: the image carries the sha256 of its (deterministic) root tarball
# in the label io.stackproof.grafana-double.content-hash.
#
# Env: GRAFANA_DOUBLE_IMAGE overrides the tag; CARGO_TARGET_DIR is honoured.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
tag="${GRAFANA_DOUBLE_IMAGE:-stackproof-local/grafana-double:12.0.2}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac

(cd "$repo" && cargo build --quiet --release -p grafana-double)
bin="$target_dir/release/grafana-double"
[ -x "$bin" ] || { echo "build-image.sh: $bin not found after cargo build" >&2; exit 2; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/rootfs"
mkdir -p "$root"

# binary at Grafana's path; /run.sh (the official entrypoint) points at it
install -D -m 0755 "$bin" "$root/usr/share/grafana/bin/grafana"
ln -s /usr/share/grafana/bin/grafana "$root/run.sh"
ln -s /usr/share/grafana/bin/grafana "$root/usr/share/grafana/bin/grafana-server"

# shared libraries, at the paths the dynamic loader expects
ldd "$bin" | awk '/=> \// {print $3} /^[[:space:]]*\/[^ ]+ \(/ {print $1}' | sort -u | while read -r lib; do
  install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done

# users: grafana is uid 472, primary group 0, as in current grafana/grafana images
mkdir -p "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\ngrafana:x:472:0::/home/grafana:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:grafana\ngrafana:x:472:\nnogroup:x:65534:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"

# Grafana's directory layout
for d in datasources dashboards notifiers plugins access-control alerting; do
  mkdir -p "$root/etc/grafana/provisioning/$d"
done
printf '; grafana-double does not read grafana.ini; only GF_* environment variables are honoured.\n' >"$root/etc/grafana/grafana.ini"
mkdir -p "$root/usr/share/grafana/conf" "$root/var/lib/grafana/plugins" "$root/var/log/grafana" "$root/home/grafana"
cat >"$root/usr/share/grafana/NOT-GRAFANA.txt" <<'TXT'
This image is grafana-double, a test double of the stackproof project that
models a few behaviours of Grafana 12.0.2. It is not Grafana.
TXT

# deterministic tarball: root-owned files, then the dirs uid 472 must write
tarball="$stage/rootfs.tar"
common=(--sort=name --mtime=@0 --numeric-owner --format=gnu)
tar -C "$root" "${common[@]}" --owner=0 --group=0 \
  --exclude=./var/lib/grafana --exclude=./var/log/grafana --exclude=./home/grafana \
  -cf "$tarball" .
tar -C "$root" "${common[@]}" --owner=472 --group=0 -rf "$tarball" ./var/lib/grafana ./var/log/grafana ./home/grafana
hash="$(sha256sum "$tarball" | cut -d' ' -f1)"

current="$(docker image inspect "$tag" --format '{{ index .Config.Labels "io.stackproof.grafana-double.content-hash" }}' 2>/dev/null || true)"
if [ "$current" = "$hash" ]; then
  echo "build-image.sh: $tag is up to date (content hash ${hash:0:12})"
  exit 0
fi

docker import \
  -c 'USER 472' \
  -c 'EXPOSE 3000' \
  -c 'WORKDIR /usr/share/grafana' \
  -c 'ENV PATH=/usr/share/grafana/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV GF_PATHS_CONFIG=/etc/grafana/grafana.ini' \
  -c 'ENV GF_PATHS_DATA=/var/lib/grafana' \
  -c 'ENV GF_PATHS_HOME=/usr/share/grafana' \
  -c 'ENV GF_PATHS_LOGS=/var/log/grafana' \
  -c 'ENV GF_PATHS_PLUGINS=/var/lib/grafana/plugins' \
  -c 'ENV GF_PATHS_PROVISIONING=/etc/grafana/provisioning' \
  -c 'ENTRYPOINT ["/run.sh"]' \
  -c "LABEL io.stackproof.test-double=\"grafana-double: a test double modelling Grafana 12.0.2, NOT Grafana\" io.stackproof.grafana-double.models=\"grafana/grafana:12.0.2\" io.stackproof.grafana-double.content-hash=\"$hash\"" \
  -m "grafana-double (test double, not Grafana)" \
  "$tarball" "$tag" >/dev/null
echo "build-image.sh: built $tag (content hash ${hash:0:12})"
