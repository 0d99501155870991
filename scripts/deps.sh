#!/usr/bin/env bash
# deps.sh: installs the Debian packages that thaw's tests and demo need and
# this machine lacks (apt-get, as root). The one list, for .ci/run and make
# demo.
set -euo pipefail
PKGS=(qemu-system-x86 qemu-utils cpio kmod busybox-static mmdebstrap e2fsprogs
	xz-utils zstd util-linux fdisk ca-certificates make minisign curl ipxe-qemu
	ipxe dnsmasq-base iproute2 tesseract-ocr ovmf systemd-boot-efi syslinux
	syslinux-common mtools dosfstools)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
	echo "deps.sh: run as root, or: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y "${missing[@]}"
