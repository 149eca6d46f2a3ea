#!/usr/bin/env bash
# Build (once) the base image of the VM boot test: a small Debian bookworm made with
# debootstrap, systemd as init, Debian's kernel + initramfs. The result is cached under
# $KUBEHARDEN_VM_CACHE (default ~/.cache/kubeharden-vm) in a folder named by the hash of this
# script, so editing the script rebuilds and CI reuses an unchanged image.
#
# Prints the cache folder on stdout. Needs root (debootstrap, chroot).
# Output in the folder: rootfs.tar (the guest's root file system), vmlinuz, initrd.img.
set -euo pipefail

SUITE=bookworm
MIRROR=${KUBEHARDEN_VM_MIRROR:-http://deb.debian.org/debian}
CACHE=${KUBEHARDEN_VM_CACHE:-$HOME/.cache/kubeharden-vm}
here=$(cd "$(dirname "$0")" && pwd)
key=$(cat "$here/build-image.sh" | sha256sum | cut -c1-16)
out="$CACHE/base-$key"

if [ -f "$out/done" ]; then
  echo "$out"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "build-image.sh: needs root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "build-image.sh: debootstrap missing" >&2; exit 2; }

mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'umount -R "$work/root/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
root="$work/root"

echo "build-image: debootstrap $SUITE (minbase + systemd + kernel) into $root" >&2
# minbase keeps the guest small; udev and kmod so the kernel's modules load as on a node.
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,udev,kmod,procps,linux-image-amd64,initramfs-tools \
  "$SUITE" "$root" "$MIRROR" >&2

# Guest configuration: no network, no getty (the test service owns the serial console),
# nothing periodic but kubeharden's own timer.
echo kubeharden-vm > "$root/etc/hostname"
printf '/dev/vda / ext4 rw,relatime 0 1\n' > "$root/etc/fstab"
chroot "$root" passwd -d root >/dev/null
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
  getty@tty1.service serial-getty@ttyS0.service systemd-timesyncd.service \
  dpkg-db-backup.timer; do
  ln -sf /dev/null "$root/etc/systemd/system/$u"
done
# A persistent journal, so the host can read it from the disk image after the run too.
mkdir -p "$root/var/log/journal"
# The initramfs needs the virtio disk driver; "most" has it, "dep" would guess from the host.
sed -i 's/^MODULES=.*/MODULES=most/' "$root/etc/initramfs-tools/initramfs.conf"
chroot "$root" update-initramfs -u -k all >&2
chroot "$root" apt-get clean
rm -rf "$root/var/lib/apt/lists"/* "$root/usr/share/doc"/* "$root/usr/share/man"/* \
  "$root/usr/share/locale"/*

mkdir -p "$work/out"
cp -L "$root/vmlinuz" "$work/out/vmlinuz"
cp -L "$root/initrd.img" "$work/out/initrd.img"
tar -C "$root" --numeric-owner -cf "$work/out/rootfs.tar" .
touch "$work/out/done"
rm -rf "$out"
mv "$work/out" "$out"
echo "build-image: cached in $out" >&2
echo "$out"
