#!/usr/bin/env bash
# make demo: thaw's main job end to end on real kernels under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
cat <<'MSG'
thaw demo
=========
A real Debian 13 server guest under QEMU (root on LVM, swap in use, a
workload keeping a secret and a counter in RAM and appending to a file on
disk) is captured while it runs and brought back on a different machine:

  1 `thaw serve` starts on the host's loopback
  2 inside the server, `thaw capture` freezes it through /dev/snapshot and
    streams memory and its disk, signed, into thaw serve (10.0.2.2), then
    powers the server off
  3 a target VM with other hardware (twice the RAM, 2 vCPUs, an e1000 NIC
    in another PCI slot instead of virtio-net) boots the restore agent:
    drivers, DHCP, the bundle over HTTP, signature, probe, plan, every chunk
    verified, the disk written
  4 its memory map differs from the source's, so the agent boots itself
    again with the source's e820 table (kexec), writes the source's ACPI
    tables back and hands the memory image to the kernel (/dev/snapshot)
  5 the capture process wakes up inside the server, finds its mailbox
    intact and exits; the workload carries on: same secret, counter going
    on, its file appendable, ACPI intact, poweroff works

MSG
make --no-print-directory kernels server initramfs
export THAW_CACHE=${CACHE:-$PWD/build/cache}
export THAW_AGENT=${AGENT:-$PWD/build/agent}
go test -tags vm -count=1 -timeout 60m -run 'TestServerCapture$|TestAgentOtherMachineDirect$' -v ./scripts/vmtest/ 2>&1 |
	tee build/demo.log | grep -a -E 'capture_test.go|targets_test.go|server_test.go|^(--- |ok|FAIL)' | sed -E 's/^ +//' | cut -c1-220
echo
echo "the agent on the target machine (build/vmlogs/e3-direct.console.log):"
grep -a -E '^\[(....| ok |FAIL)\] ' build/vmlogs/e3-direct.console.log | grep -v '^\[\.\.\.\.\]' || true
echo
echo "timing per stage:"
grep -a -E 'TIMING|agent stages' build/demo.log | sed -E 's/^.*(TIMING|agent stages)/\1/' || true
echo "console logs: build/vmlogs/capture-source.console.log, build/vmlogs/e3-direct.console.log"
