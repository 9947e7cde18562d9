#!/bin/sh
# End to end: a workload on cudasim prints the same `checksum` line with and without libphos preloaded
# (and with launch tracking armed). Usage: e2e-workload.sh LIBPHOS CUDASIM_DIR WORKLOAD [ASAN_RUNTIME]
# With an ASan build of libphos, ASAN_RUNTIME (libasan.so) must be preloaded first.
set -eu
lib=$1 simdir=$2 wl=$3 asan=${4:-}
pre=$lib
[ -n "$asan" ] && pre="$asan:$lib"
export LD_LIBRARY_PATH="$simdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
base=$("$wl" | grep '^checksum') || { echo "workload failed without libphos"; exit 1; }
with=$(LD_PRELOAD="$pre" "$wl" | grep '^checksum') || { echo "workload failed under libphos"; exit 1; }
armed=$(PHOS_ARM=1 LD_PRELOAD="$pre" "$wl" | grep '^checksum') || { echo "workload failed under libphos (armed)"; exit 1; }
echo "without: $base"
echo "with:    $with"
echo "armed:   $armed"
[ "$base" = "$with" ] && [ "$base" = "$armed" ]
