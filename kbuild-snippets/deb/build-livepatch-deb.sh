#!/bin/bash
# kbuild-snippets/deb/build-livepatch-deb.sh [options] TREE PATCH... [-- KLP_LINK_PATCH_ARGS...]
#
# Builds a Debian package that ships a live patch for the kernel built in
# TREE (the production build, through klp-cc): `klp-link patch TREE
# PATCH...` makes the module, then dpkg-deb packs it with
#
#   /lib/modules/RELEASE/livepatch/NAME.ko     the signed livepatch module
#   /usr/lib/modules-load.d/NAME.conf          "NAME": loaded at every boot
#   /usr/share/doc/PACKAGE/{copyright,changelog.gz}
#
# and maintainer scripts that run depmod and, when the running kernel is
# RELEASE, load the module at once (postinst). Boot-time loading goes
# through systemd-modules-load (modules-load.d), the distribution's own
# way to load a module at boot: no unit of our own to keep, and it loads
# before most services start. Removing the package does not unload the
# patch (disabling a live patch under load is a decision for an operator:
# echo 0 > /sys/kernel/livepatch/NAME/enabled); it is gone at the next boot.
#
# Options:
#   --name NAME          module name (default: livepatch_ + first patch's name)
#   --version V          package version (default: 1)
#   --maintainer "N <E>" the Maintainer field (default: $DEBFULLNAME <$DEBEMAIL>, or root)
#   --description TEXT   the short description
#   -o DIR               where to write PACKAGE_VERSION_amd64.deb (default: .)
#   --klp-link PATH      the klp-link to run (default: klp-link on PATH)
# Arguments after -- go to klp-link patch (--vmlinux, --sign-key, ...).
# Prints the path of the .deb. Exit status: klp-link's, or 2 for bad usage.
set -euo pipefail
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
name= version=1 maintainer= description= out=. klp_link=klp-link
while [ $# -gt 0 ]; do
    case $1 in
        --name) name=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        --maintainer) maintainer=$2; shift 2 ;;
        --description) description=$2; shift 2 ;;
        -o) out=$2; shift 2 ;;
        --klp-link) klp_link=$2; shift 2 ;;
        -h|--help) usage ;;
        -*) echo "$0: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || usage
tree=$1; shift
patches=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do patches+=("$(readlink -f "$1")"); shift; done
[ "${1:-}" != -- ] || shift
[ ${#patches[@]} -gt 0 ] || usage
[ -f "$tree/include/config/kernel.release" ] ||
    { echo "$0: $tree is not a built kernel tree (no include/config/kernel.release)" >&2; exit 2; }
release=$(cat "$tree/include/config/kernel.release")
if [ -z "$name" ]; then
    stem=$(basename "${patches[0]}"); stem=${stem%.*}
    name=livepatch_${stem//[^A-Za-z0-9_]/_}
fi
# Debian package names: lower case, digits, + - . only.
package=$(echo "livepatch-$release-${name#livepatch_}" | tr 'A-Z_' 'a-z-' | tr -cd 'a-z0-9+.-')
maintainer=${maintainer:-${DEBFULLNAME:-root} <${DEBEMAIL:-root@localhost}>}
description=${description:-live patch $name for Linux $release}
[ -d "$out" ] || { echo "$0: -o $out is not a folder" >&2; exit 2; }
command -v dpkg-deb > /dev/null || { echo "$0: dpkg-deb not found (apt-get install dpkg)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/klp-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
"$klp_link" patch "$tree" "${patches[@]}" --name "$name" -o "$work/$name.ko" "$@" >&2

install -D -m 0644 "$work/$name.ko" "$root/lib/modules/$release/livepatch/$name.ko"
install -d "$root/usr/lib/modules-load.d" "$root/usr/share/doc/$package" "$root/DEBIAN"
printf '# Live patch %s for Linux %s (package %s)\n%s\n' "$name" "$release" "$package" "$name" \
    > "$root/usr/lib/modules-load.d/$name.conf"
{
    echo "Packaged by kbuild-snippets/deb/build-livepatch-deb.sh (klp-cc)."
    echo
    echo "The module is built from the Linux kernel sources with these patches:"
    for p in "${patches[@]}"; do echo "  $(basename "$p")"; done
    echo
    echo "Copyright (C) 1991-$(date +%Y) Linus Torvalds and the Linux kernel authors,"
    echo "and the authors of the patches."
    echo "License: GPL-2.0-only"
    echo "On Debian systems, the full text is in /usr/share/common-licenses/GPL-2."
} > "$root/usr/share/doc/$package/copyright"
{
    echo "$package ($version) unstable; urgency=medium"
    echo
    echo "  * Live patch $name for Linux $release."
    echo
    echo " -- $maintainer  $(date -R)"
} | gzip -9n > "$root/usr/share/doc/$package/changelog.gz"
size=$(du -k -s "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: $package
Version: $version
Architecture: amd64
Maintainer: $maintainer
Installed-Size: $size
Depends: kmod
Section: kernel
Priority: optional
Description: $description
 A kernel live patch, built by klp-cc's klp-link from the kernel's own
 build tree. It is loaded at boot through modules-load.d and, on
 installation, at once when Linux $release is running.
CONTROL
cat > "$root/DEBIAN/postinst" <<POSTINST
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
    depmod -a $release
    if [ "\$(uname -r)" = "$release" ]; then
        modprobe $name
    fi
fi
POSTINST
cat > "$root/DEBIAN/postrm" <<POSTRM
#!/bin/sh
set -e
if [ "\$1" = remove ] || [ "\$1" = purge ]; then
    if [ -d /lib/modules/$release ]; then depmod -a $release; fi
fi
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
deb=$out/${package}_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" > /dev/null
echo "$deb"
