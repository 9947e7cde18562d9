#!/usr/bin/env bash
# Runs one workload and checks it the way a harness would: exit 0, a `ready` line, as many `step N ... ok`
# lines as --steps asked for and no BAD, and a `checksum` equal to the CPU model's (`--reference`).
# usage: run-workload.sh BINARY [ARGS...]   (the environment chooses the libcuda.so.1: cudasim or real)
set -u
bin=$1
shift
name=$(basename "$bin")

expect=$("$bin" --reference "$@") || { echo "FAIL $name: --reference exited $?"; exit 1; }
expect=$(sed -n 's/^checksum \([0-9a-f]\{16\}\)$/\1/p' <<<"$expect")
[[ -n $expect ]] || { echo "FAIL $name: --reference printed no checksum"; exit 1; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$bin" "$@" >"$out"
rc=$?
cat "$out"
steps=$(sed -n 's/^config .* steps=\([0-9]*\) .*/\1/p' "$out")
ok=$(grep -c '^step [0-9]* t [0-9.]* ok$' "$out")
bad=$(grep -c '^step [0-9]* t [0-9.]* BAD$' "$out")
got=$(sed -n 's/^checksum \([0-9a-f]\{16\}\)$/\1/p' "$out")

fail=""
[[ $rc -eq 0 ]] || fail+=" exit=$rc"
grep -qx ready "$out" || fail+=" no-ready"
[[ $bad -eq 0 ]] || fail+=" bad-steps=$bad"
[[ $ok -eq ${steps:--1} ]] || fail+=" ok-steps=$ok/${steps:-?}"
[[ $got == "$expect" ]] || fail+=" checksum=${got:-none}/expected=$expect"
if [[ -n $fail ]]; then
  echo "FAIL $name:$fail"
  exit 1
fi
echo "PASS $name checksum $got"
