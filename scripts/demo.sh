#!/usr/bin/env bash
# make demo: thaw's main job end to end on real kernels under QEMU: a
# running Debian 13 server moves to a VMware-like machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
cat <<'MSG'
thaw demo
=========
A real Debian 13 server under QEMU (root and swap on LVM, swap in use,
redis holding a value only in RAM, a workload counting in RAM) is captured
while it runs and brought back on a machine whose hardware differs: the
disk on a VMware PVSCSI controller instead of virtio-blk, the NIC a VMXNET3
in another PCI slot instead of virtio-net.

  1 on the host, `thaw serve` serves bundles and logs on loopback
  2 in the server, `thaw capture` freezes it through /dev/snapshot and
    streams its memory and disk, signed, into thaw serve, then powers off
  3 the new machine boots the restore agent: drivers, DHCP, the bundle
    over HTTP, signature, probe, the device plan, the disk written in one
    pass (each chunk fetched once and checked against the signed index
    before it is written); the plan and the image kernel's own pvscsi and vmxnet3
    modules go into the image's memory (the mailbox)
  4 the capture process wakes up first, loads those modules, re-points
    the LVM volumes to the disk's new place and gives the new NIC the old
    name, MAC and address; then the server goes on
  5 from the host, a redis client reads the value the server held in RAM

MSG
./scripts/deps.sh
CACHE=${CACHE:-$PWD/build/cache}
make --no-print-directory kernels initramfs
go run ./scripts/buildserver "$CACHE" # the Debian 13 server only
export THAW_CACHE=$CACHE THAW_AGENT=${AGENT:-$PWD/build/agent}
status=0
go test -tags vm -count=1 -timeout 60m -run 'TestServerCapture$|TestAgentVMwareLike$' -v ./scripts/vmtest/ >build/demo.log 2>&1 || status=$?
say() { grep -a -E "$1" "$2" | sed -E 's/^ +//; s/^[a-z_]+_test\.go:[0-9]+: //' | cut -c1-200 || true; }
echo "1. on the host"
say 'host\$ thaw serve' build/demo.log | head -1
echo
echo "2. in the source server (build/vmlogs/capture-source.console.log)"
say 'server# ' build/demo.log
say '^thaw capture( \[| dry)' build/vmlogs/capture-source.console.log | grep -v 'dry run' | head -20
echo
echo "3. the new machine boots the agent (build/vmlogs/e6-vmware.console.log)"
say 'target: the agent boots' build/demo.log
say '^\[( ok |FAIL)\] |^ +device |REFUSED' build/vmlogs/e6-vmware.console.log
echo
echo "4. in the resumed server"
say '^thaw capture \[.*(resumed|takeover|thawed)' build/vmlogs/e6-vmware.console.log
echo
echo "5. from the host"
say 'host\$ redis-cli' build/demo.log
say 'NICs after the move' build/demo.log
echo
echo "timing:"
say 'TIMING|agent stages' build/demo.log
echo
if [ "$status" = 0 ]; then
	echo "demo: the server moved; its RAM-only value answered from the new machine (full log: build/demo.log)"
else
	echo "demo: FAILED (status $status); the log is build/demo.log, the consoles build/vmlogs/" >&2
	grep -a -E '^\s+\S+_test\.go:[0-9]+: ' build/demo.log | tail -5 >&2 || true
fi
exit "$status"
