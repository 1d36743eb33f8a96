#!/usr/bin/env bash
# Builds the image the Dockerfile's FROM names (shardkv-base:bookworm) without an image
# registry: a Debian bookworm root filesystem made by debootstrap (variant minbase), this
# machine's Node binary and npm copied in, imported with `docker import`.
#
# Why the host's Node: the runtime needs Node >= 20.18.1 and bookworm's nodejs is 18. The
# binary is copied with its npm and its headers (include/node), so node-gyp compiles
# better-sqlite3 in the Dockerfile's build stage without downloading headers.
#
# Cached: the image carries a label with a hash of its inputs (this script, the Node binary,
# npm's version, the local CA certificates); when the tag exists with that label, nothing is
# done. --force rebuilds. Needs root, debootstrap and a running docker daemon.
#
# Usage: deploy/base-image/build.sh [--tag NAME] [--mirror URL] [--force]
set -euo pipefail

TAG="shardkv-base:bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="bookworm"
FORCE=0
# ca-certificates: npm and the apt of the build stage reach the registries over TLS.
# libstdc++6 and libgcc-s1: the Node binary and better-sqlite3's addon link against them.
PACKAGES="ca-certificates,libstdc++6,libgcc-s1"

die() { echo "base-image: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --tag) TAG="${2:?--tag needs a value}"; shift 2 ;;
    --mirror) MIRROR="${2:?--mirror needs a value}"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

[[ "$(id -u)" -eq 0 ]] || die "debootstrap needs root (run as root or with sudo)"
command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install -y debootstrap)"
command -v docker >/dev/null || die "docker is missing (apt-get install -y docker.io)"
docker info >/dev/null 2>&1 || die "the docker daemon does not answer (start dockerd)"

NODE_BIN="$(readlink -f "$(command -v node)")" || die "node is not on PATH"
NODE_PREFIX="$(dirname "$(dirname "$NODE_BIN")")"
NPM_DIR=""
for d in "$NODE_PREFIX/lib/node_modules/npm" /usr/lib/node_modules/npm /usr/local/lib/node_modules/npm; do
  [[ -f "$d/bin/npm-cli.js" ]] && { NPM_DIR="$d"; break; }
done
[[ -n "$NPM_DIR" ]] || die "npm is not found next to $NODE_BIN"
HEADERS="$NODE_PREFIX/include/node"
[[ -f "$HEADERS/node_version.h" ]] || die "Node's headers are not in $HEADERS (node-gyp needs them offline)"
NODE_VERSION="$("$NODE_BIN" --version)"
MIN="v20.18.1"
[[ "$(printf '%s\n%s\n' "$MIN" "$NODE_VERSION" | sort -V | head -n1)" == "$MIN" ]] \
  || die "node $NODE_VERSION is older than $MIN (package.json engines)"

# Locally added CAs (e.g. of a proxy every connection here goes through): without them npm and
# apt in the build stage cannot verify the registries. Debian's own bundle comes from ca-certificates.
shopt -s nullglob
LOCAL_CAS=(/usr/local/share/ca-certificates/*.crt)
shopt -u nullglob

HASH="$( {
  # Contents only: the same script and binary hash alike from any path they are run from.
  cat "$0" "$NODE_BIN" | sha256sum
  "$NODE_BIN" -p "require('$NPM_DIR/package.json').version"
  echo "$MIRROR $SUITE $PACKAGES"
  [[ ${#LOCAL_CAS[@]} -eq 0 ]] || cat "${LOCAL_CAS[@]}" | sha256sum
} | sha256sum | cut -c1-16 )"

if [[ "$FORCE" -eq 0 ]]; then
  have="$(docker image inspect --format '{{ index .Config.Labels "shardkv.base.inputs" }}' "$TAG" 2>/dev/null || true)"
  if [[ "$have" == "$HASH" ]]; then
    echo "base-image: $TAG is current (inputs $HASH); nothing to do"
    exit 0
  fi
fi

WORK="$(mktemp -d -t shardkv-base-XXXXXX)"
ROOTFS="$WORK/rootfs"
cleanup() {
  # debootstrap mounts /proc and /sys in the target; unmount before removing anything.
  for m in proc sys dev/pts dev; do umount -l "$ROOTFS/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

echo "base-image: debootstrap $SUITE ($MIRROR) into $ROOTFS"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -n 30 "$WORK/debootstrap.log" >&2
  die "debootstrap failed (last lines above)"
fi

# Security updates too, so `apt-get install` in a later stage gets current packages.
cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF

if [[ ${#LOCAL_CAS[@]} -gt 0 ]]; then
  cp "${LOCAL_CAS[@]}" "$ROOTFS/usr/local/share/ca-certificates/"
  chroot "$ROOTFS" update-ca-certificates >/dev/null
fi

install -m 0755 "$NODE_BIN" "$ROOTFS/usr/local/bin/node"
mkdir -p "$ROOTFS/usr/local/lib/node_modules" "$ROOTFS/usr/local/include"
cp -a "$NPM_DIR" "$ROOTFS/usr/local/lib/node_modules/npm"
cp -a "$HEADERS" "$ROOTFS/usr/local/include/node"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/local/bin/npx"
# node-gyp finds the headers here instead of downloading them.
mkdir -p "$ROOTFS/usr/local/etc"
printf 'nodedir=/usr/local\nfund=false\naudit=false\nupdate-notifier=false\n' >"$ROOTFS/usr/local/etc/npmrc"
chroot "$ROOTFS" /usr/local/bin/node --version >/dev/null || die "the copied node does not run inside the root filesystem"

# Smaller image: apt's lists and caches, docs and man pages are not needed at run time.
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/var/log/*.log

echo "base-image: importing as $TAG"
tar -C "$ROOTFS" -c . | docker import \
  --change "LABEL shardkv.base.inputs=$HASH" \
  --change "LABEL shardkv.base.node=$NODE_VERSION" \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt" \
  --change "ENV LANG=C.UTF-8" \
  --change 'CMD ["node"]' \
  - "$TAG" >/dev/null
echo "base-image: $TAG built (node $NODE_VERSION, inputs $HASH)"
