#!/bin/sh
# /init of the builder VM: puts LVM on the new disk's partition 1 and copies
# the root filesystem image into the root LV. vda: the new disk; vdb: the
# root filesystem image (ext4, made by mke2fs -d), whose own lvm tools run
# in a chroot. Kernel parameters: builder.rootmb=, builder.swapmb=, builder.vg=.
# The swap LV is formatted too. With builder.luks=UUID the root LV becomes a
# LUKS2 volume (the image's own cryptsetup, its /etc/keys/root.key) and the
# image goes into the opened volume.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod "/lib/modules/$m" || echo "BUILDER: insmod $m failed"; done </modules.order
arg() { for a in $(cat /proc/cmdline); do case $a in "$1"=*) echo "${a#*=}" ;; esac; done; }
fail() { echo "BUILDER: FAIL $*"; poweroff -f; }
i=0
while { [ ! -b /dev/vda1 ] || [ ! -b /dev/vdb ]; } && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mkdir -p /src
mount -t ext4 /dev/vdb /src || fail "mount root image"
mount --bind /dev /src/dev
mount -t proc proc /src/proc
mount -t sysfs sysfs /src/sys
mount -t tmpfs tmpfs /src/run
vg=$(arg builder.vg)
rootmb=$(arg builder.rootmb)
lvm() { chroot /src /usr/sbin/lvm "$@" --config 'activation { udev_sync = 0 udev_rules = 0 } devices { obtain_device_list_from_udev = 0 }'; }
lvm pvcreate -ff -y /dev/vda1 || fail pvcreate
lvm vgcreate "$vg" /dev/vda1 || fail vgcreate
lvm lvcreate -y -Wn -Zn -L "${rootmb}m" -n root "$vg" || fail lvcreate
lvm lvcreate -y -Wn -Zn -L "$(arg builder.swapmb)m" -n swap "$vg" || fail "lvcreate swap"
lvm vgmknodes || true
echo "BUILDER: LVM ready"
dmdev() { for d in /sys/block/dm-*; do read -r n <"$d/dm/name"; [ "$n" = "$1" ] && echo "/dev/${d##*/}"; done; }
lv() { dmdev "$vg-$1"; }
luks=$(arg builder.luks)
if [ -n "$luks" ]; then
	cs() { chroot /src /usr/sbin/cryptsetup "$@"; }
	cs luksFormat --batch-mode --type luks2 --uuid "$luks" --sector-size 512 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
		--key-file /etc/keys/root.key "$(lv root)" || fail luksFormat
	cs open --key-file /etc/keys/root.key "$(lv root)" root_crypt || fail "cryptsetup open"
	# For the tests (buildserver keeps it beside the disk): the volume
	# key, read here, never in the server.
	echo "BUILDER: LUKS dump"
	cs luksDump --dump-volume-key --batch-mode --key-file /etc/keys/root.key "$(lv root)" || fail luksDump
	echo "BUILDER: LUKS dump end"
	# Only the filesystem's blocks in use go through the cipher (e2image
	# -ra, from the image's e2fsprogs, the image mounted read-only): the
	# rest of the volume stays unwritten, sparse in the disk image.
	mount -o remount,ro /src || fail "remount the root image read-only"
	chroot /src /usr/sbin/e2image -ra /dev/vdb "$(dmdev root_crypt)" || fail "e2image into root_crypt"
	echo "BUILDER: LUKS ready"
fi
umount /src/run /src/sys /src/proc /src/dev /src
node=$(lv root)
[ -b "$node" ] || fail "no block device for $vg/root"
swap=$(lv swap)
[ -b "$swap" ] || fail "no block device for $vg/swap"
mkswap -L swap "$swap" || fail "mkswap $swap"
[ -n "$luks" ] || dd if=/dev/vdb of="$node" bs=4M 2>/dev/null || fail "copy root image"
sync
echo "BUILDER: DONE"
poweroff -f
