#!/bin/sh
# /init of the busybox test guest. Kernel parameters:
#   guest.mode=hibernate guest.swap=vda   mkswap+swapon, keep a secret and an
#       8 MiB random blob in RAM, print them, hibernate to the swap device; when
#       resumed, print the secret again and count.
#   guest.mode=resume guest.resume=vda2   ask the kernel to resume from there.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
	insmod "/lib/modules/$m" 2>/dev/null || echo "THAW-GUEST: insmod $m failed"
done </modules.order
arg() {
	for a in $(cat /proc/cmdline); do
		case $a in "$1"=*) echo "${a#*=}" ;; esac
	done
}
waitdev() {
	i=0
	while [ ! -b "/dev/$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	[ -b "/dev/$1" ] || { echo "THAW-GUEST: FAIL no /dev/$1"; poweroff -f; }
}
case $(arg guest.mode) in
hibernate)
	dev=$(arg guest.swap)
	waitdev "$dev"
	mkswap "/dev/$dev" >/dev/null
	swapon "/dev/$dev"
	cat "/sys/class/block/$dev/dev" >/sys/power/resume
	echo shutdown >/sys/power/disk
	secret=$(head -c 16 /dev/urandom | md5sum | cut -c1-32)
	dd if=/dev/urandom of=/blob bs=1M count=8 2>/dev/null
	blob=$(md5sum </blob | cut -c1-32)
	echo "THAW-GUEST: SECRET=$secret BLOB=$blob"
	echo disk >/sys/power/state
	echo "THAW-GUEST: RESUMED SECRET=$secret BLOB=$(md5sum </blob | cut -c1-32)"
	n=0
	while [ $n -lt 3 ]; do echo "THAW-GUEST: TICK $n"; n=$((n + 1)); sleep 1; done
	echo "THAW-GUEST: DONE"
	poweroff -f
	;;
resume)
	dev=$(arg guest.resume)
	waitdev "$dev"
	echo "THAW-GUEST: resuming from /dev/$dev ($(cat /sys/class/block/$dev/dev))"
	cat "/sys/class/block/$dev/dev" >/sys/power/resume
	echo "THAW-GUEST: NO-RESUME"
	poweroff -f
	;;
*)
	echo "THAW-GUEST: no guest.mode; shell"
	exec sh
	;;
esac
