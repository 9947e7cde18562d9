#!/usr/bin/env bash
# Packs what the GPU machine lacks into .carry/gpu (git-ignored; name it in the device tool's `carry`):
# the CRIU we built with the shared libraries ldd lists for it (not glibc: the target has its own) and a
# wrapper that points only criu at them; Node.js (xz-compressed, cached), the agent and the CLI bundled
# into one file each by esbuild, and the pccl addon built here.
# Run here, before a GPU run:  bash bench/gpu/pack.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT="$ROOT/.carry/gpu"
CRIU=${PHOS_CRIU:-/usr/local/sbin/criu}
[ -x "$CRIU" ] || { echo "pack: $CRIU missing; run: bash deploy/install.sh" >&2; exit 1; }
rm -rf "$OUT/criu" && mkdir -p "$OUT/criu/lib"
cp "$CRIU" "$OUT/criu/criu"
# An A/B against CRIU without phos's patches (deploy/criu): PHOS_CRIU_STOCK names such a build (the same
# source, unpatched); PHOS_CRIU_VARIANT=criu-stock on the GPU machine makes the wrapper run it.
if [ -n "${PHOS_CRIU_STOCK:-}" ]; then cp "$PHOS_CRIU_STOCK" "$OUT/criu/criu-stock"; fi
ldd "$CRIU" | awk '$3 ~ /^\// {print $3}' | grep -vE '/(libc|libm|libdl|libpthread|ld-linux[^/]*)\.so' | while read -r lib; do cp -L "$lib" "$OUT/criu/lib/"; done
cat >"$OUT/criu/criu-wrap" <<'WRAP'
#!/bin/sh
# criu with the libraries it was built against; nothing else sees them.
d=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH="$d/lib" exec "$d/${PHOS_CRIU_VARIANT:-criu}" "$@"
WRAP
chmod +x "$OUT/criu/criu-wrap"

# iproute2's ip (the migration bench makes network namespaces; the GPU machine has no ip), same way.
rm -rf "$OUT/ip" && mkdir -p "$OUT/ip/lib" "$OUT/ip/bin"
IP=$(readlink -f "$(command -v ip)")
cp "$IP" "$OUT/ip/ip"
ldd "$IP" | awk '$3 ~ /^\// {print $3}' | grep -vE '/(libc|libm|libdl|libpthread|ld-linux[^/]*)\.so' | while read -r lib; do cp -L "$lib" "$OUT/ip/lib/"; done
cat >"$OUT/ip/bin/ip" <<'WRAP'
#!/bin/sh
# ip with the libraries it was built against (never use its `netns exec`: the command would inherit them).
d=$(dirname "$(dirname "$(readlink -f "$0")")")
LD_LIBRARY_PATH="$d/lib" exec "$d/ip" "$@"
WRAP
chmod +x "$OUT/ip/bin/ip"

# Node.js: the GPU machine has none. Compressing takes minutes, so the result is cached.
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/phos
mkdir -p "$CACHE"
NODE_BIN=$(readlink -f "$(command -v node)")
if [ ! -f "$CACHE/node.xz" ] || [ "$NODE_BIN" -nt "$CACHE/node.xz" ]; then
  echo "pack: compressing $NODE_BIN (a few minutes, once)"
  xz -T0 -6 -c "$NODE_BIN" >"$CACHE/node.xz.tmp" && mv "$CACHE/node.xz.tmp" "$CACHE/node.xz"
fi
cp "$CACHE/node.xz" "$OUT/node.xz"

# The agent, the coordinator, the CLI and the pccl bench (with its peer) as single ESM files (msgpackr's optional native extension stays out).
mkdir -p "$OUT/bundle"
for entry in services/node-agent/src/main.ts:agent services/coordinator/src/main.ts:coordinator cli/src/main.ts:phos \
    bench/gpu/pccl-entry.ts:pccl-bench native/pccl/test/transport-peer.ts:transport-peer; do
  (cd "$ROOT" && npx esbuild "${entry%%:*}" --bundle --platform=node --format=esm --target=node20 \
    --outfile="$OUT/bundle/${entry##*:}.mjs" --external:msgpackr-extract --log-level=warning \
    "--banner:js=import { createRequire as __phosCreateRequire } from 'node:module'; const require = __phosCreateRequire(import.meta.url);")
done
[ -f "$ROOT/build/pccl/Release/pccl.node" ] || { echo "pack: build/pccl/Release/pccl.node missing; run: bash deploy/install.sh" >&2; exit 1; }
cp "$ROOT/build/pccl/Release/pccl.node" "$OUT/pccl.node"
# nats-server for the migration bench (a static binary from the Debian package).
cp "$(command -v nats-server)" "$OUT/nats-server"
du -sh "$OUT"
