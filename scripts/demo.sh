#!/usr/bin/env bash
# make demo: what thaw does today, end to end, on real kernels under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
cat <<'MSG'
thaw demo
=========
Not yet: the restore agent (capture into `thaw serve`, netboot on other
hardware, plan, restore) is still to be built; this demo does not pretend to
do it. What runs below is the foundation it stands on, on a real Debian 13
server guest under QEMU (root on LVM, swap partition, a workload service
keeping a secret and a counter in RAM and appending to a file on disk):

  1. the server hibernates with `systemctl hibernate`; its kernel writes the
     image to the swap partition and powers off
  2. `thaw inspect` reads and verifies the kernel's image
  3. `thaw rewrite` moves it, uncompressed, to partition 2 of another disk
  4. the server boots with resume= there and its own initramfs resumes it:
     same secret, counter continuing, the file on disk still appendable

MSG
make --no-print-directory kernels server
export THAW_CACHE=${CACHE:-$PWD/build/cache}
go test -tags vm -count=1 -run 'TestServerRewriteResume$' -v ./scripts/vmtest/ 2>&1 |
	tee build/demo.log | grep -E 'server_test.go|thaw \[|^(--- |ok|FAIL)' | sed -E 's/^ +//'
echo
echo "console logs: build/vmlogs/server-hibernate.console.log, build/vmlogs/server-resume.console.log"
