# shellcheck shell=bash
# tests/kernel/e2e-tree.sh - for the scripts that work on e2e.sh's trees
# and load what they build into its guests.  Source it after lib.sh.
#
# klp_take_e2e_tree E2E NEED: sets TREE=$E2E/klp and RUNNING=$E2E/running,
# checks that e2e.sh built them (NEED: a file RUNNING must have, such as
# bzImage or vmlinux), takes e2e.sh's lock on fd 9 for the rest of the
# script, and exports kbuild-check's fixed build identity, which those
# trees were built with (another would rebuild init/version.o).  Exits 2
# when the trees are missing or e2e.sh runs.
klp_take_e2e_tree() {
    TREE=$1/klp RUNNING=$1/running
    [ -f "$TREE/.klp-e2e-key" ] && [ -f "$RUNNING/$2" ] ||
        { klp_err "no e2e trees under $1: run tests/kernel/e2e.sh first (with --one-build for e2e-one-build)"; exit 2; }
    exec 9>"$1/.lock"
    flock -n 9 || { klp_err "e2e.sh is running (it holds $1/.lock)"; exit 2; }
    export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 2026'
    export KBUILD_BUILD_USER=klp-cc KBUILD_BUILD_HOST=kbuild-check KBUILD_BUILD_VERSION=1
}

# sign_like_kbuild TREE KO: when TREE signs modules (CONFIG_MODULE_SIG), sign
# KO as its `make modules_install` would (scripts/Makefile.modinst): `make
# modules` leaves them unsigned, and a MODULE_SIG_FORCE guest loads no other.
sign_like_kbuild() {
    local tree=$1 ko=$2 hash key
    grep -qx 'CONFIG_MODULE_SIG=y' "$tree/.config" || return 0
    hash=$(sed -n 's/^CONFIG_MODULE_SIG_HASH="\(.*\)"$/\1/p' "$tree/.config")
    key=$(sed -n 's/^CONFIG_MODULE_SIG_KEY="\(.*\)"$/\1/p' "$tree/.config")
    case $key in /*|pkcs11:*) ;; *) key=$tree/$key ;; esac
    "$tree/scripts/sign-file" "$hash" "$key" "$tree/certs/signing_key.x509" "$ko" ||
        { klp_err "sign-file failed for $ko"; return 1; }
}
