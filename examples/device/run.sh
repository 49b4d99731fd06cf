#!/usr/bin/env bash
# Build mmiotrace and the example driver, trace the driver's accesses to its
# simulated device, and print the log.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${TMPDIR:-/tmp}/mmiotrace-example
mkdir -p "$out"
export PATH=$PATH:/usr/local/go/bin
(cd "$root" && CGO_ENABLED=0 go build -o "$out/mmiotrace" ./cmd/mmiotrace)
gcc -O2 -pthread -o "$out/device" "$root/examples/device/device.c"
"$out/mmiotrace" record --map '/dev/shm/mmiotrace-example*' -o "$out/device.log" -- "$out/device" /dev/shm/mmiotrace-example-$$
echo
echo "== $out/device.log"
cat "$out/device.log"
