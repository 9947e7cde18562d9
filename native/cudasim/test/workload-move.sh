#!/usr/bin/env bash
# A workload moved to another sim GPU mid-run: start it, suspend it with ckpt-ctl once it is ready and
# stepping, resume it with --gpu-map (a swap of GPUs 0 and 1), and check what run-workload.sh checks:
# exit 0, every step ok, checksum equal to the CPU model's.
# usage: workload-move.sh WORKLOAD CKPT_CTL GPU_MAP [WORKLOAD ARGS...]   (PHOS_SIM_GPUS >= 2)
set -u
bin=$1 ctl=$2 map=$3
shift 3
name=$(basename "$bin")
expect=$("$bin" --reference "$@" | sed -n 's/^checksum \([0-9a-f]\{16\}\)$/\1/p')
[[ -n $expect ]] || { echo "FAIL $name: --reference printed no checksum"; exit 1; }

out=$(mktemp)
trap 'rm -f "$out"; [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null' EXIT
"$bin" "$@" >"$out" &
pid=$!
for _ in $(seq 500); do grep -q '^step 3 ' "$out" && break; sleep 0.02; done
grep -q '^step 3 ' "$out" || { cat "$out"; echo "FAIL $name: never reached step 3"; exit 1; }
"$ctl" suspend "$pid" || { echo "FAIL $name: suspend"; exit 1; }
before=$(grep -c '^step ' "$out")
sleep 0.2
[[ $(grep -c '^step ' "$out") -le $((before + 1)) ]] || { echo "FAIL $name: stepped while suspended"; exit 1; }
"$ctl" --gpu-map "$map" resume "$pid" || { echo "FAIL $name: resume --gpu-map $map"; exit 1; }
wait "$pid"
rc=$?
pid=
cat "$out"
steps=$(sed -n 's/^config .* steps=\([0-9]*\) .*/\1/p' "$out")
ok=$(grep -c '^step [0-9]* t [0-9.]* ok$' "$out")
got=$(sed -n 's/^checksum \([0-9a-f]\{16\}\)$/\1/p' "$out")
fail=""
[[ $rc -eq 0 ]] || fail+=" exit=$rc"
[[ $ok -eq ${steps:--1} ]] || fail+=" ok-steps=$ok/${steps:-?}"
[[ $got == "$expect" ]] || fail+=" checksum=${got:-none}/expected=$expect"
[[ -z $fail ]] || { echo "FAIL $name:$fail"; exit 1; }
echo "PASS $name moved (--gpu-map $map) checksum $got"
