# shellcheck shell=bash
# tests/kernel/modsign.sh - sign a module as kbuild does, for the scripts
# that load modules they built into a MODULE_SIG_FORCE guest.  Source it
# after lib.sh (for klp_err).
#
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
