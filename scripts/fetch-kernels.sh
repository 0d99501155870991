#!/usr/bin/env bash
# fetch-kernels.sh CACHE [RELEASE-FLAVOUR ...]
#
# Fetches Debian kernels through their metapackages (linux-image-cloud-amd64,
# linux-image-amd64), never a pinned ABI package, into CACHE/kernels/NAME/:
#   vmlinuz   the kernel image
#   release   its uname -r
#   package   the ABI package the metapackage resolved to
#   modules/  lib/modules/RELEASE with modules.dep and modules.alias (depmod)
# NAME is debian13-cloud, debian13-full, debian12-cloud or debian12-full
# (default: all four). Each suite uses a private apt configuration under
# CACHE/apt/SUITE; the machine's own sources are never read or changed.
# A kernel already present is not fetched again; remove its directory to
# refresh it.
set -euo pipefail
cache=${1:?usage: fetch-kernels.sh CACHE [NAME ...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(debian13-cloud debian13-full debian12-cloud debian12-full)
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

apt_opts() { # suite
	local d=$cache/apt/$1
	echo "-o Dir::Etc::sourcelist=$d/sources.list -o Dir::Etc::sourceparts=- \
-o Dir::State::Lists=$d/lists -o Dir::Cache=$d/cache -o APT::Get::List-Cleanup=0 \
-o Debug::NoLocking=1 -o APT::Architecture=amd64"
}

apt_update() { # suite
	local d=$cache/apt/$1
	[ -f "$d/updated" ] && [ -n "$(find "$d/updated" -mmin -720)" ] && return 0
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
	echo "deb http://deb.debian.org/debian $1 main" >"$d/sources.list"
	echo "fetch-kernels: apt-get update ($1, private configuration in $d)" >&2
	# shellcheck disable=SC2046
	apt-get $(apt_opts "$1") -q update >&2
	touch "$d/updated"
}

for name in "${names[@]}"; do
	case $name in
	debian13-*) suite=trixie ;;
	debian12-*) suite=bookworm ;;
	*) echo "fetch-kernels: unknown kernel $name (want debian13-cloud, debian13-full, debian12-cloud, debian12-full)" >&2; exit 2 ;;
	esac
	case $name in
	*-cloud) meta=linux-image-cloud-amd64 ;;
	*-full) meta=linux-image-amd64 ;;
	*) echo "fetch-kernels: unknown flavour in $name" >&2; exit 2 ;;
	esac
	out=$cache/kernels/$name
	if [ -f "$out/vmlinuz" ] && [ -f "$out/modules/modules.alias" ]; then
		echo "fetch-kernels: $name: $(cat "$out/release") (cached)" >&2
		continue
	fi
	apt_update $suite
	# shellcheck disable=SC2046
	pkg=$(apt-cache $(apt_opts $suite) depends "$meta" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	[ -n "$pkg" ] || { echo "fetch-kernels: $meta in $suite names no linux-image ABI package" >&2; exit 1; }
	echo "fetch-kernels: $name: $meta -> $pkg" >&2
	tmp=$(mktemp -d "$cache/tmp.XXXXXX")
	# shellcheck disable=SC2046
	(cd "$tmp" && apt-get $(apt_opts $suite) -q download "$pkg" >&2)
	dpkg-deb -x "$tmp"/*.deb "$tmp/root"
	rel=${pkg#linux-image-}
	rel=${rel%-unsigned}
	moddir=$tmp/root/lib/modules/$rel
	[ -d "$moddir" ] || moddir=$tmp/root/usr/lib/modules/$rel
	[ -d "$moddir" ] || { echo "fetch-kernels: $pkg has no modules directory for $rel" >&2; exit 1; }
	mkdir -p "$tmp/dm/lib/modules"
	mv "$moddir" "$tmp/dm/lib/modules/$rel"
	depmod -b "$tmp/dm" "$rel"
	rm -rf "$out"
	mkdir -p "$out"
	mv "$tmp/root/boot/vmlinuz-$rel" "$out/vmlinuz"
	mv "$tmp/root/boot/config-$rel" "$out/config" 2>/dev/null || true
	mv "$tmp/dm/lib/modules/$rel" "$out/modules"
	echo "$rel" >"$out/release"
	echo "$pkg" >"$out/package"
	rm -rf "$tmp"
	echo "fetch-kernels: $name: $rel" >&2
done
