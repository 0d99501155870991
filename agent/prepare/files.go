package prepare

import (
	"fmt"
	"strings"
)

// Paths of the files thaw prepare installs, relative to the root of the
// system it prepares.
const (
	HookPath   = "etc/initramfs-tools/hooks/thaw"
	ScriptPath = "etc/initramfs-tools/scripts/local-top/thaw"
	RulesPath  = "etc/udev/rules.d/61-thaw-prepare.rules"
	ConfPath   = "etc/thaw/prepare.conf"
	// DonePath is written once the initramfs holds the files, and removed
	// once it no longer does: a run that failed half-way is finished by
	// the next.
	DonePath   = "etc/thaw/prepare.done"
	BinaryPath = "usr/local/lib/thaw/thaw"
)

// Installed lists the files in the order Install writes them; Undo
// removes them all.
var Installed = []string{BinaryPath, ConfPath, RulesPath, ScriptPath, HookPath}

const hook = `#!/bin/sh
# Written by thaw prepare; thaw prepare --undo removes it.
# Puts the thaw binary, dm_mod, the udev rule and the list of partitions
# to wrap into the initramfs (see scripts/local-top/thaw).
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
[ -r /` + ConfPath + ` ] || exit 0
manual_add_modules dm_mod
copy_exec /` + BinaryPath + ` /sbin/thaw
mkdir -p "$DESTDIR/etc/thaw" "$DESTDIR/usr/lib/udev/rules.d"
cp /` + ConfPath + ` "$DESTDIR/etc/thaw/"
cp /` + RulesPath + ` "$DESTDIR/usr/lib/udev/rules.d/"
`

const script = `#!/bin/sh
# Written by thaw prepare; thaw prepare --undo removes it.
# Puts the partitions listed in /etc/thaw/prepare.conf behind dm-linear
# devices (thaw-*) before the root is mounted, so that a captured server
# can move to another disk controller. A partition that does not show up
# is left alone, and the boot goes on as before.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
. /scripts/functions
[ -r /etc/thaw/prepare.conf ] || exit 0
modprobe -q dm_mod
wait_for_udev 10
pairs=""
waited=0
while read -r name partuuid rest; do
	case "$name" in "" | \#*) continue ;; esac
	dev=""
	while ! dev=$(resolve_device "PARTUUID=$partuuid") && [ $waited -lt 300 ]; do
		sleep 0.1
		waited=$((waited + 1))
	done
	if [ -z "$dev" ]; then
		log_warning_msg "thaw: no partition PARTUUID=$partuuid for $name: left alone"
		continue
	fi
	pairs="$pairs $name=$(readlink -f "$dev")"
done </etc/thaw/prepare.conf
[ -n "$pairs" ] || exit 0
# The root and resume devices, resolved now that the partitions are here
# and before they are wrapped (blkid would then find the thaw-* devices).
rootdev=""
resumedev=""
[ -n "$ROOT" ] && rootdev=$(resolve_device "$ROOT") && rootdev=$(readlink -f "$rootdev")
[ -n "$resume" ] && resumedev=$(resolve_device "$resume") && resumedev=$(readlink -f "$resumedev")
# shellcheck disable=SC2086
/sbin/thaw prepare --initramfs $pairs || log_warning_msg "thaw: some partitions stay unwrapped"
for p in $pairs; do
	name=${p%%=*}
	dev=${p#*=}
	[ -b "/dev/mapper/$name" ] || continue
	[ "$dev" = "$rootdev" ] && echo "ROOT=/dev/mapper/$name" >>/conf/param.conf
	[ "$dev" = "$resumedev" ] && echo "resume=/dev/mapper/$name" >>/conf/param.conf
done
exit 0
`

// rules gives the thaw-* devices the filesystem links ahead of the
// partitions beneath them (link_priority), and a /dev/mapper link where no
// dm rules of the distribution make one. A suspended device is not probed.
const rules = `# Written by thaw prepare; thaw prepare --undo removes it.
# The thaw-* device-mapper devices carry the filesystems and swap of the
# partitions beneath them: their /dev/disk links win over the partitions'.
SUBSYSTEM!="block", GOTO="thaw_end"
KERNEL!="dm-[0-9]*", GOTO="thaw_end"
ACTION=="remove", GOTO="thaw_end"
ATTR{dm/name}!="thaw-*", GOTO="thaw_end"
OPTIONS+="link_priority=100"
SYMLINK+="mapper/$attr{dm/name}"
ATTR{dm/suspended}=="1", GOTO="thaw_end"
ENV{ID_FS_TYPE}!="?*", IMPORT{builtin}="blkid"
ENV{ID_FS_UUID_ENC}=="?*", SYMLINK+="disk/by-uuid/$env{ID_FS_UUID_ENC}"
ENV{ID_FS_LABEL_ENC}=="?*", SYMLINK+="disk/by-label/$env{ID_FS_LABEL_ENC}"
LABEL="thaw_end"
`

// conf renders the list of partitions: one line each, the dm name and the
// PARTUUID the initramfs finds it by, then a comment.
func conf(es []Entry) string {
	var b strings.Builder
	b.WriteString("# Written by thaw prepare; thaw prepare --undo removes it.\n")
	b.WriteString("# dm name, PARTUUID of the partition beneath it, and what it carries.\n")
	for _, e := range es {
		fmt.Fprintf(&b, "%s %s # /dev/%s %s\n", e.Name, e.PartUUID, e.Dev, e.Use)
	}
	return b.String()
}

// parseConf reads what conf wrote: the name and PARTUUID of each line,
// and from its comment the partition and what it carries.
func parseConf(s string) []Entry {
	var es []Entry
	for _, line := range strings.Split(s, "\n") {
		var comment string
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line, comment = line[:i], line[i+1:]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		e := Entry{Name: f[0], PartUUID: f[1]}
		if c := strings.Fields(comment); len(c) == 2 {
			e.Dev, e.Use = strings.TrimPrefix(c[0], "/dev/"), c[1]
		}
		es = append(es, e)
	}
	return es
}
