#!/bin/sh
# Build mmiotrace and the example driver, and trace the driver's accesses to
# its simulated device. Needs Go and gcc. Run from anywhere in the checkout.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${TMPDIR:-/tmp}/mmiotrace-example
mkdir -p "$out"
(cd "$root" && go build -o "$out/mmiotrace" ./cmd/mmiotrace)
gcc -O1 -pthread -o "$out/device" "$here/device.c"
cd "$out"
echo "\$ mmiotrace record --map '/dev/shm/mmiotrace-example*' -o - -- ./device" >&2
exec ./mmiotrace record --map '/dev/shm/mmiotrace-example*' -o - -- ./device
