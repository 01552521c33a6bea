#!/usr/bin/env bash
# The container engine this machine can run: docker when its daemon answers, else podman (with
# runc; installed from Debian when missing). Prints the engine's command on stdout; progress on
# stderr. Idempotent. Facts behind the podman settings: ../shared/DESIGN.md "Containers".
set -euo pipefail
say() { echo "engine: $*" >&2; }

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo docker
  exit 0
fi
if ! command -v podman >/dev/null 2>&1; then
  say "no docker daemon and no podman: installing podman, runc, debootstrap from Debian"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq podman runc debootstrap >/dev/null
fi
conf=/etc/containers/containers.conf
if ! grep -qs 'runtime = "runc"' "$conf" || ! grep -qs 'nproc=' "$conf"; then
  # crun fails here ("cgroups in hybrid mode not supported"); podman's default nofile and nproc
  # limits are above the machine's hard limits, which a container cannot raise.
  nofile=$(ulimit -Hn)
  # nproc: runc is refused above 32768 here even where the hard limit is higher (measured).
  nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
  [ "$nofile" = unlimited ] && nofile=1048576
  say "writing $conf (runtime runc, nofile ${nofile}, nproc ${nproc})"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n\n[engine]\nruntime = "runc"\n' \
    "$nofile" "$nofile" "$nproc" "$nproc" | $SUDO tee "$conf" >/dev/null
fi
echo podman
