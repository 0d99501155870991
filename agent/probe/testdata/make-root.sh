#!/bin/sh
# make-root.sh DIR builds in DIR (new or empty) the fake machine
# probe_test.go reads: the /proc and /sys a Debian 13 guest under QEMU
# (SeaBIOS, 256 MiB, i440fx) shows, with a virtio disk holding LVM, an NVMe
# disk, a multipath NVMe namespace, a virtio-scsi disk, a virtio and an e1000
# NIC. sysfs is mostly symlinks and its names hold colons, which a Go module
# may not carry, so the test makes the tree in a temporary directory with this
# script instead of keeping it in testdata.
set -eu
if [ $# -ne 1 ]; then
	echo "usage: make-root.sh DIR" >&2
	exit 2
fi
mkdir -p "$1"
cd "$1"
if [ -n "$(ls -A)" ]; then
	echo "make-root.sh: $1 is not empty" >&2
	exit 1
fi

# w FILE TEXT: write TEXT and a newline to FILE.
w() {
	[ -d "${1%/*}" ] || mkdir -p "${1%/*}"
	printf '%s\n' "$2" >"$1"
}
# l TARGET LINK: make LINK a symlink to TARGET.
l() {
	[ -d "${2%/*}" ] || mkdir -p "${2%/*}"
	ln -s "$1" "$2"
}

REL=6.12.57+deb13-amd64
w proc/sys/kernel/osrelease "$REL"
w proc/sys/kernel/version '#1 SMP PREEMPT_DYNAMIC Debian 6.12.57-1 (2025-11-05)'
w proc/sys/kernel/hostname thaw-src
w proc/cmdline "BOOT_IMAGE=/vmlinuz-$REL root=/dev/mapper/vg0-root ro console=ttyS0 resume=/dev/mapper/vg0-swap"
w "boot/vmlinuz-$REL" 'not a kernel'
w "usr/lib/modules/$REL/modules.alias" 'alias virtio:d00000001v* virtio_net'

cat >proc/cpuinfo <<'EOF'
processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 26
model		: 2
model name	: AMD EPYC
stepping	: 1
cpu MHz		: 2096.019
cache size	: 1024 KB
physical id	: 0
siblings	: 2
core id		: 0
cpu cores	: 2
apicid		: 0
initial apicid	: 0
fpu		: yes
fpu_exception	: yes
cpuid level	: 13
wp		: yes
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext lm constant_tsc rep_good nopl xtopology tsc_reliable nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm cr8_legacy misalignsse 3dnowprefetch topoext pti        vmmcall bmi1 avx2 bmi2 erms avx512f avx512dq adx avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 avx_vnni avx512_bf16 clzero xsaveerptr arat avx512vbmi avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq movdiri movdir64b fsrm avx512_vp2intersect
bugs		: cpu_meltdown spectre_v1 spectre_v2 spec_store_bypass srso spectre_v2_user
bogomips	: 4192.03
TLB size	: 192 4K pages
clflush size	: 64
cache_alignment	: 64
address sizes	: 48 bits physical, 48 bits virtual
power management:

processor	: 1
vendor_id	: AuthenticAMD
cpu family	: 26
model		: 2
model name	: AMD EPYC
stepping	: 1
cpu MHz		: 2096.019
cache size	: 1024 KB
physical id	: 0
siblings	: 2
core id		: 1
cpu cores	: 2
apicid		: 1
initial apicid	: 1
fpu		: yes
fpu_exception	: yes
cpuid level	: 13
wp		: yes
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext lm constant_tsc rep_good nopl xtopology tsc_reliable nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm cr8_legacy misalignsse 3dnowprefetch topoext pti        vmmcall bmi1 avx2 bmi2 erms avx512f avx512dq adx avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 avx_vnni avx512_bf16 clzero xsaveerptr arat avx512vbmi avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq movdiri movdir64b fsrm avx512_vp2intersect
bugs		: cpu_meltdown spectre_v1 spectre_v2 spec_store_bypass srso spectre_v2_user
bogomips	: 4192.03
TLB size	: 192 4K pages
clflush size	: 64
cache_alignment	: 64
address sizes	: 48 bits physical, 48 bits virtual
power management:

EOF

cat >proc/meminfo <<'EOF'
MemTotal:         209924 kB
MemFree:           61288 kB
MemAvailable:     125452 kB
Buffers:            6352 kB
Cached:            72764 kB
SwapCached:            0 kB
SwapTotal:       1048572 kB
SwapFree:        1048572 kB
EOF

cat >proc/swaps <<'EOF'
Filename				Type		Size		Used		Priority
/dev/dm-1                               partition	1048572		0		-2
/var/swap\040file                       file		524284		1024		-3
EOF

mkdir -p proc/self
cat >proc/self/mountinfo <<'EOF'
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
23 28 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 28 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=96200k,nr_inodes=24050,mode=755
27 28 0:25 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=22796k,mode=755
28 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg0-root rw,errors=remount-ro
31 28 254:2 / /boot rw,relatime shared:60 - ext4 /dev/vda2 rw
33 28 259:1 / /srv/my\040data rw,relatime shared:62 - xfs /dev/nvme0n1p1 rw,attr2,inode64
35 28 0:45 / /data rw,relatime shared:64 - btrfs /dev/nvme1n1 rw,space_cache=v2,subvolid=5,subvol=/
EOF

mkdir -p proc/net
cat >proc/net/route <<'EOF'
Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
enp0s3	00000000	0202000A	0003	0	0	0	00000000	0	0	0
enp0s3	0002000A	00000000	0001	0	0	0	00FFFFFF	0	0	0
enp0s7	0007A8C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
enp0s7	057100CB	0107A8C0	0007	0	0	0	FFFFFFFF	0	0	0
enp0s7	0000000A	00000000	0000	0	0	0	000000FF	0	0	0
docker0	000011AC	00000000	0001	0	0	0	0000FFFF	0	0	0
EOF

# The firmware memory map of QEMU with SeaBIOS and 256 MiB (end inclusive).
i=0
for e in '0x0 0x9fbff System RAM' \
	'0x9fc00 0x9ffff Reserved' \
	'0xf0000 0xfffff Reserved' \
	'0x100000 0xffdcfff System RAM' \
	'0xffdd000 0xfffffff Reserved' \
	'0xfffc0000 0xffffffff Reserved' \
	'0xfd00000000 0xffffffffff Reserved'; do
	set -- $e
	start=$1 end=$2
	shift 2
	w sys/firmware/memmap/$i/start "$start"
	w sys/firmware/memmap/$i/end "$end"
	w sys/firmware/memmap/$i/type "$*"
	i=$((i + 1))
done

D=sys/devices/pci0000:00
# pci ADDR VENDOR DEVICE CLASS SUBVENDOR SUBDEVICE [DRIVER]
pci() {
	d=$D/$1
	w $d/vendor 0x$2
	w $d/device 0x$3
	w $d/class 0x$4
	w $d/subsystem_vendor 0x$5
	w $d/subsystem_device 0x$6
	cls=$4
	w $d/modalias "$(printf 'pci:v0000%sd0000%ssv0000%ssd0000%sbc%ssc%si%s' \
		$(echo $2 $3 $5 $6 | tr a-f A-F) \
		$(echo $cls | cut -c1-2 | tr a-f A-F) \
		$(echo $cls | cut -c3-4 | tr a-f A-F) \
		$(echo $cls | cut -c5-6 | tr a-f A-F))"
	l ../../../devices/pci0000:00/$1 sys/bus/pci/devices/$1
	if [ $# -ge 7 ]; then
		mkdir -p sys/bus/pci/drivers/$7
		l ../../../bus/pci/drivers/$7 $d/driver
	fi
}
# virtio ADDR N DRIVER: virtioN on the virtio-pci function ADDR.
virtio() {
	mkdir -p sys/bus/virtio/drivers/$3
	l ../../../../bus/virtio/drivers/$3 $D/$1/virtio$2/driver
}
# part DISKDIR NAME NUMBER START SIZE (sectors)
part() {
	w $1/$2/partition $3
	w $1/$2/start $4
	w $1/$2/size $5
}

pci 0000:00:00.0 8086 1237 060000 1af4 1100
pci 0000:00:01.0 8086 7000 060100 1af4 1100
pci 0000:00:01.1 8086 7010 010180 1af4 1100 ata_piix
pci 0000:00:03.0 1af4 1000 020000 1af4 0001 virtio-pci
pci 0000:00:04.0 1af4 1001 010000 1af4 0002 virtio-pci
pci 0000:00:05.0 1b36 0010 010802 1af4 1100 nvme
pci 0000:00:06.0 1b36 0010 010802 1af4 1100 nvme
pci 0000:00:07.0 8086 100e 020000 1af4 1100 e1000
pci 0000:00:08.0 1af4 1004 010000 1af4 0008 virtio-pci

# NICs: virtio, e1000, and the virtual lo and docker0.
virtio 0000:00:03.0 0 virtio_net
n=$D/0000:00:03.0/virtio0/net/enp0s3
w $n/address 52:54:00:12:34:56
l ../../../virtio0 $n/device
l ../../devices/pci0000:00/0000:00:03.0/virtio0/net/enp0s3 sys/class/net/enp0s3
n=$D/0000:00:07.0/net/enp0s7
w $n/address 52:54:00:ab:cd:ef
l ../../../0000:00:07.0 $n/device
l ../../devices/pci0000:00/0000:00:07.0/net/enp0s7 sys/class/net/enp0s7
for v in lo docker0; do
	w sys/devices/virtual/net/$v/address 00:00:00:00:00:00
	l ../../devices/virtual/net/$v sys/class/net/$v
done

# vda: virtio-blk, GPT with BIOS boot, /boot and an LVM PV.
virtio 0000:00:04.0 1 virtio_blk
b=$D/0000:00:04.0/virtio1/block/vda
w $b/size 16777216
w $b/dev 254:0
w $b/serial thaw-root
w $b/queue/logical_block_size 512
l ../../../virtio1 $b/device
part $b vda1 1 2048 2048
part $b vda2 2 4096 1048576
part $b vda3 3 1052672 15724511
l ../devices/pci0000:00/0000:00:04.0/virtio1/block/vda sys/block/vda

# nvme0n1: NVMe without multipath, one partition.
b=$D/0000:00:05.0/nvme/nvme0/nvme0n1
w $D/0000:00:05.0/nvme/nvme0/model 'QEMU NVMe Ctrl                          '
w $D/0000:00:05.0/nvme/nvme0/serial 'deadbeef            '
w $b/size 4194304
w $b/dev 259:0
w $b/wwid nvme.1b36-6465616462656566-51454d55204e564d65204374726c-00000001
l ../../nvme0 $b/device
part $b nvme0n1p1 1 2048 4192223
l ../devices/pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1 sys/block/nvme0n1

# nvme1n1: a multipath namespace under its subsystem, whole-disk btrfs.
s=sys/devices/virtual/nvme-subsystem/nvme-subsys1
w $D/0000:00:06.0/nvme/nvme1/model 'QEMU NVMe Ctrl'
w $s/model 'QEMU NVMe Ctrl                          '
w $s/serial 'cafef00d            '
l ../../../pci0000:00/0000:00:06.0/nvme/nvme1 $s/nvme1
w $s/nvme1n1/size 2097152
w $s/nvme1n1/dev 259:2
w $s/nvme1n1/wwid eui.0000000000000001
l ../../nvme-subsys1 $s/nvme1n1/device
l ../devices/virtual/nvme-subsystem/nvme-subsys1/nvme1n1 sys/block/nvme1n1

# sda: virtio-scsi, serial only in VPD page 0x80.
virtio 0000:00:08.0 2 virtio_scsi
t=$D/0000:00:08.0/virtio2/host0/target0:0:0/0:0:0:0
w $t/model 'QEMU HARDDISK   '
w $t/wwid naa.5000c500a1b2c3d4
printf '\000\200\000\012SCSI-SER01' >$t/vpd_pg80
mkdir -p sys/bus/scsi/drivers/sd
l ../../../../../../../bus/scsi/drivers/sd $t/driver
w $t/block/sda/size 2097152
w $t/block/sda/dev 8:0
l ../../../0:0:0:0 $t/block/sda/device
l ../devices/pci0000:00/0000:00:08.0/virtio2/host0/target0:0:0/0:0:0:0/block/sda sys/block/sda

# Not disks: a CD drive and a loop device.
t=$D/0000:00:01.1/ata2/host1/target1:0:0/1:0:0:0
w $t/model 'QEMU DVD-ROM    '
w $t/block/sr0/size 0
l ../../../1:0:0:0 $t/block/sr0/device
l ../devices/pci0000:00/0000:00:01.1/ata2/host1/target1:0:0/1:0:0:0/block/sr0 sys/block/sr0
w sys/devices/virtual/block/loop0/size 0
l ../devices/virtual/block/loop0 sys/block/loop0

# LVM on vda3: dm-0 vg0-root, dm-1 vg0-swap.
for i in 0 1; do
	d=sys/devices/virtual/block/dm-$i
	w $d/dev 253:$i
	w $d/dm/uuid LVM-Jq3hV5dQbgN2Bt0eYl8f1Wc6sM9kXa4RZ0$i
	l ../../../../pci0000:00/0000:00:04.0/virtio1/block/vda/vda3 $d/slaves/vda3
	mkdir -p $d/holders
	l ../devices/virtual/block/dm-$i sys/block/dm-$i
done
w sys/devices/virtual/block/dm-0/dm/name vg0-root
w sys/devices/virtual/block/dm-0/size 13627392
w sys/devices/virtual/block/dm-1/dm/name vg0-swap
w sys/devices/virtual/block/dm-1/size 2097152
