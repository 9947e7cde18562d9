#!/usr/bin/env bash
# Installs everything phos needs on Debian 12 and builds the native parts. Called by both README
# commands and by CI, so it is idempotent and checks before it acts: with everything present it only
# verifies and runs the (no-op) incremental builds. Each failure is one line with its remedy.
#
# Steps: Debian packages -> CRIU >= 4.1 (built from the next Debian release's source package, because
# Debian 12's 3.17 fails `criu check` on kernels >= 6.13) -> npm packages -> native builds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CRIU_MIN=4.1
# The Debian release whose `criu` source package builds against Debian 12's libraries (4.1.1 in trixie).
CRIU_SUITE=${PHOS_CRIU_SUITE:-trixie}
CRIU_PREFIX=${PHOS_CRIU_PREFIX:-/usr/local}
# Where our criu keeps its kernel-probe cache (criu.kdat). CRIU keeps it only on tmpfs and looks in /run,
# which is not tmpfs on machines without systemd (these VMs): every dump and restore then re-probed the
# kernel, ~40 ms each, inside the app's stall. /dev/shm is tmpfs everywhere; the agent keeps this folder
# root-only (common/src/criu-version.ts, CRIU_KDAT_DIR: keep the two equal).
CRIU_KDAT_DIR=/dev/shm/phos-criu
# phos's patches to CRIU (deploy/criu/*.patch, applied in name order); each one's binary holds its marker.
CRIU_PATCH_MARKERS=("phos-thp-fill v2")
JOBS=$(nproc 2>/dev/null || echo 2)

APT_PACKAGES=(
  build-essential cmake patch pkg-config iproute2 nats-server curl xz-utils ca-certificates
  # CRIU build dependencies (Debian 12 versions)
  libbsd-dev libcap-dev libgnutls28-dev libnet1-dev libnftables-dev libnl-3-dev libprotobuf-c-dev
  libprotobuf-dev protobuf-c-compiler protobuf-compiler python3-protobuf uuid-dev
)

CLEANUP=()
trap 'rm -rf "${CLEANUP[@]}"' EXIT
say() { printf '  %-14s %s\n' "$1" "$2"; }
die() { printf 'install: %s\n  remedy: %s\n' "$1" "$2" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

# --- Debian packages --------------------------------------------------------------------------------
apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then say packages "ok (${#APT_PACKAGES[@]} present)"; return; fi
  say packages "installing: ${missing[*]}"
  command -v apt-get >/dev/null || die "apt-get not found: phos installs on Debian 12" "install ${missing[*]} with your package manager"
  as_root apt-get update -qq >/dev/null || die "apt-get update failed" "check the apt sources and network, then re-run deploy/install.sh"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install failed for: ${missing[*]}" "run: sudo apt-get install ${missing[*]}"
}

# --- CRIU >= 4.1 -------------------------------------------------------------------------------------
criu_version() { "$1" --version 2>/dev/null | awk '/^Version:/ {print $2}'; }

# The mirror the system already uses for Debian 12 (deb822 .sources or one-line .list format).
debian_mirror() {
  local uri=''
  if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
    uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && !/-security/ { if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s=substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit } }' /etc/apt/sources.list.d/*.sources)
  fi
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1=="deb" && $0 ~ / bookworm / { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }')
  fi
  printf '%s' "$uri"
}

build_criu() {
  local mirror work lists uris orig_url orig_sha orig_file
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || die "no Debian 12 mirror found in the apt sources" "add a bookworm entry to /etc/apt/sources.list.d/, or install CRIU >= $CRIU_MIN yourself"
  work=$(mktemp -d /tmp/phos-criu.XXXXXX)
  CLEANUP+=("$work")
  lists="$work/lists"; mkdir -p "$lists/partial"
  echo "deb-src [trusted=yes] $mirror $CRIU_SUITE main" >"$work/sources.list"
  local aptopts=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$lists" -qq)
  say criu "building $CRIU_SUITE's criu source package against Debian 12 (about a minute)"
  apt-get "${aptopts[@]}" update >/dev/null 2>&1 || die "could not read $CRIU_SUITE sources from the system's mirror" "check network access to the apt mirror, then re-run"
  uris=$(cd "$work" && apt-get "${aptopts[@]}" source --print-uris criu 2>/dev/null) || die "no criu source package in $CRIU_SUITE" "set PHOS_CRIU_SUITE to a release that has criu >= $CRIU_MIN"
  orig_url=$(printf '%s\n' "$uris" | awk -F"'" '/\.orig\.tar/ {print $2; exit}')
  orig_sha=$(printf '%s\n' "$uris" | awk '/\.orig\.tar/ { for (i=1;i<=NF;i++) if ($i ~ /^SHA256:/) { sub(/^SHA256:/, "", $i); print $i; exit } }')
  [ -n "$orig_url" ] || die "criu source listing had no upstream tarball" "set PHOS_CRIU_SUITE to another release"
  orig_file="$work/$(basename "$orig_url")"
  curl -fsSL -o "$orig_file" "$orig_url" || die "download of the criu source failed" "check network access to the apt mirror, then re-run"
  if [ -n "$orig_sha" ]; then
    echo "$orig_sha  $orig_file" | sha256sum -c --quiet - || die "criu source checksum mismatch" "re-run; if it persists the mirror is serving a bad file"
  fi
  tar -xf "$orig_file" -C "$work"
  local src; src=$(find "$work" -maxdepth 1 -type d -name 'criu-*' | head -n1)
  local p
  for p in "$ROOT"/deploy/criu/*.patch; do
    (cd "$src" && patch -p1 --forward --silent <"$p") >"$work/patch.log" 2>&1 \
      || { cat "$work/patch.log" >&2; die "$(basename "$p") does not apply to $(basename "$orig_file")" "the $CRIU_SUITE criu moved on: rebase deploy/criu/$(basename "$p") onto it"; }
  done
  (cd "$src" && make -j"$JOBS" criu RUNDIR="$CRIU_KDAT_DIR" >"$work/build.log" 2>&1) || { tail -n 20 "$work/build.log" >&2; die "criu build failed (log above)" "check that the CRIU build dependencies installed, then re-run"; }
  as_root install -D -m 0755 "$src/criu/criu" "$CRIU_PREFIX/sbin/criu" || die "cannot install criu into $CRIU_PREFIX/sbin" "re-run as root"
  rm -rf "$work"
}

criu_step() {
  local have bin="$CRIU_PREFIX/sbin/criu"
  if [ -x "$bin" ]; then have=$(criu_version "$bin"); else have=''; fi
  if [ -n "$have" ] && version_ge "$have" "$CRIU_MIN"; then
    # A criu built before the kdat folder was set probes the kernel on every run, and one without phos's
    # patches restores slower: rebuild it once.
    local why='' m
    grep -qaF "$CRIU_KDAT_DIR/criu.kdat" "$bin" || why='keeps no kernel-probe cache'
    for m in "${CRIU_PATCH_MARKERS[@]}"; do grep -qaF "$m" "$bin" || why="${why:+$why, }lacks phos's patch $m"; done
    if [ -z "$why" ]; then say criu "ok ($have at $bin)"; return; fi
    say criu "$have at $bin $why; rebuilding it"
  fi
  build_criu
  have=$(criu_version "$bin")
  version_ge "${have:-0}" "$CRIU_MIN" || die "built criu reports version '${have}'" "inspect $bin"
  say criu "installed $have at $bin"
  local first; first=$(command -v criu || true)
  [ "$first" = "$bin" ] || say criu "note: '$first' comes first on PATH; phos uses $bin"
}

# --- npm ---------------------------------------------------------------------------------------------
npm_step() {
  local stamp="$ROOT/node_modules/.phos-lock-sha" want
  want=$(sha256sum "$ROOT/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then say npm "ok (node_modules matches package-lock.json)"; return; fi
  say npm "npm ci"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci failed" "run 'npm ci' in $ROOT to see the error"
  echo "$want" >"$stamp"
}

# --- native builds -----------------------------------------------------------------------------------
native_step() {
  local dir="$ROOT/build/native"
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$ROOT/native" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$ROOT/build/cmake-configure.log" 2>&1 \
      || { tail -n 20 "$ROOT/build/cmake-configure.log" >&2; die "cmake configure of native/ failed (log above)" "fix the error, then re-run deploy/install.sh"; }
  fi
  cmake --build "$dir" -j"$JOBS" >"$ROOT/build/native-build.log" 2>&1 \
    || { grep -E 'error|Error' "$ROOT/build/native-build.log" | head -n 20 >&2; die "native build failed (errors above; full log build/native-build.log)" "fix the error, then re-run deploy/install.sh"; }
  say native "ok (build/native)"
}

addon_step() {
  [ -f "$ROOT/native/pccl/CMakeLists.txt" ] || return 0
  if [ -f "$ROOT/build/pccl/Release/pccl.node" ] && [ -z "$(find "$ROOT/native/pccl" -newer "$ROOT/build/pccl/Release/pccl.node" -type f | head -n1)" ]; then
    say addon "ok (build/pccl)"; return
  fi
  (cd "$ROOT" && npx cmake-js compile --directory native/pccl --out build/pccl >"$ROOT/build/pccl-build.log" 2>&1) \
    || { tail -n 20 "$ROOT/build/pccl-build.log" >&2; die "pccl addon build failed (log above)" "fix the error, then re-run deploy/install.sh"; }
  say addon "built build/pccl"
}

main() {
  echo "phos install ($ROOT)"
  mkdir -p "$ROOT/build"
  apt_packages
  criu_step
  npm_step
  native_step
  addon_step
}
main "$@"
