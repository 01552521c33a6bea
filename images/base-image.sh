#!/usr/bin/env bash
# An offline base image when no registry answers: Debian bookworm (minbase, from the Debian
# mirror) with its python3 (3.11) and uv, imported into the engine as $1 (default
# mlplatform/base:bookworm). About a minute the first time; skipped when the image exists.
set -euo pipefail
name=${1:-mlplatform/base:bookworm}
engine=${ENGINE:-$(bash "$(dirname "$0")/engine.sh")}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
uv_version=${UV_VERSION:-0.13.9}
if $engine image exists "$name" 2>/dev/null || $engine image inspect "$name" >/dev/null 2>&1; then
  echo "base image $name exists ($($engine image inspect "$name" --format '{{.Size}}') bytes)"
  exit 0
fi
root=$(mktemp -d /tmp/mlplatform-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
echo "debootstrap bookworm (minbase) from $mirror into $root (about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$root" "$mirror" >/dev/null
# The host's CA bundle: where the registries are reached through a TLS-inspecting proxy, its
# root is in there (elsewhere it holds the same public roots as Debian's).
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
# uv as the images use it; Debian's python is externally managed, so pip is told so.
chroot "$root" env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  python3 -m pip install --quiet --break-system-packages --cert /etc/ssl/certs/ca-certificates.crt \
  "uv==${uv_version}"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/root/.cache
tar -C "$root" -c . | $engine import - "$name" >/dev/null
echo "base image $name built in $(( $(date +%s) - start )) s"
