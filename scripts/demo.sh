#!/usr/bin/env bash
# make demo: thaw's main job end to end on real kernels under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
cat <<'MSG'
thaw demo
=========
A real Debian 13 server guest under QEMU (root on LVM, swap in use, a
workload keeping a secret and a counter in RAM and appending to a file on
disk) is captured while it runs and brought back from the bundle:

  1 `thaw serve` starts on the host's loopback
  2 inside the server, `thaw capture` freezes it through /dev/snapshot and
    streams memory and its disk, signed, into thaw serve (10.0.2.2), then
    powers the server off
  3 on the host, `thaw inspect` verifies the bundle over HTTP; `thaw
    restore` fetches it with range requests, verifies every chunk, writes a
    fresh disk and the resume image
  4 a new VM with the same hardware boots the server's own kernel and
    initrd with the printed resume=: the capture process wakes up inside
    the server, finds its mailbox intact and exits; the workload carries on

Not yet: the netbooting restore agent that does step 3 and 4 on different
hardware (memory-map replay, driver plans) is the next piece of work.

MSG
make --no-print-directory kernels server
export THAW_CACHE=${CACHE:-$PWD/build/cache}
go test -tags vm -count=1 -timeout 60m -run 'TestServerCapture$' -v ./scripts/vmtest/ 2>&1 |
	tee build/demo.log | grep -a -E 'capture_test.go|export_test.go|server_test.go|^(--- |ok|FAIL)' | sed -E 's/^ +//' | cut -c1-220
echo
grep -a -E 'TIMING' build/demo.log | sed -E 's/^.*TIMING //' || true
echo "console logs: build/vmlogs/capture-source.console.log, build/vmlogs/capture-restored.console.log"
