#!/bin/bash
# tests/kernel/package-check.sh - the packaging fragments on a real tree.
#
# On e2e.sh --one-build's klp tree (the production build; run that first),
# under e2e.sh's lock:
#   1. kbuild-snippets/deb/build-livepatch-deb.sh builds a .deb for
#      tests/kernel/patches/cmdline.patch with dpkg-deb; its files, control
#      fields and maintainer scripts are checked, the module in it must be a
#      signed livepatch module for the tree's release, and lintian (installed
#      here when missing) must report no error;
#   2. kbuild-snippets/rpm/livepatch.spec builds an .rpm with rpmbuild
#      (Debian's rpm package, installed here when missing) for the same
#      patch; its file list and scriptlets are checked.
# Afterwards the tree's sources must be the pristine ones again.
# Env: KLP_LINK (default target/release/klp-link), KLP_KERNEL_CACHE.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/kernel/lib.sh
. "$HERE/lib.sh"
# shellcheck source=tests/kernel/e2e-tree.sh
. "$HERE/e2e-tree.sh"
KLP_LOG_TAG=package-check
KLP_LINK=${KLP_LINK:-$REPO/target/release/klp-link}
[ -x "$KLP_LINK" ] || { klp_err "no klp-link at $KLP_LINK (cargo build --release)"; exit 2; }
klp_take_e2e_tree "$KLP_KERNEL_CACHE/e2e-one-build" bzImage
need=()
command -v lintian > /dev/null || need+=(lintian)
command -v rpmbuild > /dev/null || need+=(rpm)
if [ ${#need[@]} -gt 0 ]; then
    klp_log "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null
fi
WORK=$(mktemp -d /var/tmp/klp-package-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PATCH=$HERE/patches/cmdline.patch
release=$(cat "$TREE/include/config/kernel.release")
name=livepatch_cmdline
fails=0
check() {  # WHAT CONDITION...
    local what=$1; shift
    if "$@"; then klp_log "ok: $what"; else klp_err "FAIL: $what"; fails=$((fails + 1)); fi
}
# is_livepatch KO: a livepatch module for $release with a module signature.
is_livepatch() {
    [ "$(modinfo -F livepatch "$1")" = Y ] &&
        modinfo -F vermagic "$1" | grep -q "^$release " &&
        tail -c 28 "$1" | grep -q '~Module signature appended~'
}

# ---- Debian
deb=$(TMPDIR=$WORK "$REPO/kbuild-snippets/deb/build-livepatch-deb.sh" --klp-link "$KLP_LINK" \
    --name "$name" --version 1.0 --maintainer "klp-cc CI <ci@example.org>" -o "$WORK" \
    "$TREE" "$PATCH" -- --quiet)
klp_log "built $deb"
dpkg-deb -c "$deb" > "$WORK/deb.files"
check "the .deb installs the module under /lib/modules/$release/livepatch/" \
    grep -q "\./lib/modules/$release/livepatch/$name.ko$" "$WORK/deb.files"
check "the .deb has a modules-load.d entry" grep -q "\./usr/lib/modules-load.d/$name.conf$" "$WORK/deb.files"
mkdir -p "$WORK/deb-root" && dpkg-deb -R "$deb" "$WORK/deb-root"
check "its modules-load.d entry names the module" grep -qx "$name" "$WORK/deb-root/usr/lib/modules-load.d/$name.conf"
check "the module in it is a signed livepatch for $release" is_livepatch "$WORK/deb-root/lib/modules/$release/livepatch/$name.ko"
check "postinst runs depmod and loads the patch on the running release" \
    grep -q "depmod -a $release" "$WORK/deb-root/DEBIAN/postinst"
check "the package is named for the release and the patch" \
    test "$(dpkg-deb -f "$deb" Package)" = "livepatch-$release-cmdline"
lrc=0; lintian --fail-on error,warning "$deb" > "$WORK/lintian.log" 2>&1 || lrc=$?
sed -n 's/^[EW]: /    lintian: &/p' "$WORK/lintian.log" | head -20
check "lintian reports no error or warning" test $lrc -eq 0

# ---- rpm
top=$WORK/rpmbuild
if TMPDIR=$WORK rpmbuild -bb "$REPO/kbuild-snippets/rpm/livepatch.spec" --define "_topdir $top" \
        --define "klp_tree $TREE" --define "klp_patches $PATCH" --define "klp_name $name" \
        --define "klp_link $KLP_LINK" --define "klp_link_args --quiet" > "$WORK/rpmbuild.log" 2>&1; then
    rpm=$(find "$top/RPMS" -name '*.rpm' | head -1)
    klp_log "built $rpm"
    rpm -qlp "$rpm" > "$WORK/rpm.files" 2>/dev/null
    check "the .rpm installs the module" grep -qx "/lib/modules/$release/livepatch/$name.ko" "$WORK/rpm.files"
    check "the .rpm has a modules-load.d entry" grep -qx "/usr/lib/modules-load.d/$name.conf" "$WORK/rpm.files"
    check "its %post runs depmod" sh -c "rpm -qp --scripts '$rpm' 2>/dev/null | grep -q 'depmod -a $release'"
    mkdir -p "$WORK/rpm-root" && (cd "$WORK/rpm-root" && rpm2cpio "$rpm" | cpio -id --quiet)
    check "the module in it is a signed livepatch for $release" is_livepatch "$WORK/rpm-root/lib/modules/$release/livepatch/$name.ko"
else
    tail -20 "$WORK/rpmbuild.log" >&2
    check "rpmbuild builds the spec" false
fi

# ---- the tree
edits=$(cd "$TREE" && find . -path ./.klp-link -prune -o -type f -newer .config -name '*.[ch]' -print |
    while read -r f; do [ -f "$KLP_KERNEL_CACHE/src/$f" ] && ! cmp -s "$KLP_KERNEL_CACHE/src/$f" "$f" && echo "$f"; done || true)
check "the tree's sources are the pristine ones" test -z "$edits"
[ $fails -eq 0 ] || { klp_err "$fails check(s) failed"; exit 1; }
klp_log "PASS"
