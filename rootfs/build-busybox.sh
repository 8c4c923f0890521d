#!/bin/sh
# Build a small root file system from Debian's busybox-static.
#
#   rootfs/build-busybox.sh [DEST]     (default: rootfs/busybox next to this script)
#
# Every applet is a symbolic link to /bin/busybox, as `busybox --install -s`
# would make them. /etc/passwd and /etc/group hold root and one ordinary user
# (app, uid 1000), and the mount points the runtime needs are empty folders.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-$here/busybox}
busybox=${BUSYBOX:-/bin/busybox}

if [ ! -x "$busybox" ]; then
    echo "build-busybox: $busybox not found: install it with 'apt-get install busybox-static'" >&2
    exit 1
fi
if ! "$busybox" --list-full >/dev/null 2>&1; then
    echo "build-busybox: $busybox lacks --list-full: install busybox-static" >&2
    exit 1
fi
case $(LC_ALL=C file -b "$busybox" 2>/dev/null || echo unknown) in
    *dynamically*) echo "build-busybox: $busybox is dynamically linked: install busybox-static" >&2; exit 1;;
esac

tmp=$(mktemp -d "${dest}.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/bin" "$tmp/sbin" "$tmp/usr/bin" "$tmp/usr/sbin" "$tmp/etc" \
    "$tmp/proc" "$tmp/sys" "$tmp/dev" "$tmp/root" "$tmp/home/app" "$tmp/var/log" "$tmp/run"
mkdir -m 1777 "$tmp/tmp"
chmod 700 "$tmp/root"
cp "$busybox" "$tmp/bin/busybox"
for applet in $("$busybox" --list-full); do
    [ "$applet" = bin/busybox ] && continue
    ln -sf /bin/busybox "$tmp/$applet"
done

cat > "$tmp/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app user:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$tmp/etc/group" <<'GROUP'
root:x:0:
tty:x:5:
users:x:100:app
app:x:1000:
nogroup:x:65534:
GROUP
chown 1000:1000 "$tmp/home/app"
echo busybox > "$tmp/etc/hostname"
: > "$tmp/etc/hosts"
: > "$tmp/etc/resolv.conf"

rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "build-busybox: root file system ready in $dest"
