#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seeds taken from the real-world fixtures in
# ../shared/real (next to the repository) and a few generated inputs. Seeds are generated,
# never committed (fuzz/corpus is gitignored). Re-running replaces the seed files it wrote
# and leaves whatever the fuzzer added to the corpus in place.
#
# Environment:
#   REAL            fixture folder (default: <repo>/../shared/real)
#   SEED_MAX_BYTES  skip .ipk seeds larger than this (default 1048576: the `package` target
#                   refuses packages over 1 MiB, so larger seeds only slow the fuzzer down)
set -euo pipefail

FUZZ="$(cd "$(dirname "$0")" && pwd)"
REAL="${REAL:-$FUZZ/../../shared/real}"
SEED_MAX_BYTES="${SEED_MAX_BYTES:-1048576}"
CORPUS="$FUZZ/corpus"

if [ ! -d "$REAL" ]; then
    echo "seed.sh: fixture folder $REAL not found (set REAL=...)" >&2
    exit 1
fi
REAL="$(cd "$REAL" && pwd)"
TARGETS="control version relation package usign index release parse_date prokit_config prokit_policy prokit_status prokit_resolve keyring_manifest keyring_signatures keyring_package audit_log index_gz archman_cache"

for t in $TARGETS; do
    mkdir -p "$CORPUS/$t"
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# A stable seed name from a fixture path: feeds/foo+bar/Packages -> feeds_foo+bar_Packages.
slug() { printf '%s' "$1" | tr '/ ' '__'; }

# --- package: every .ipk of the fixtures, and packages built by dpkg-deb ---------------------
n=0
while IFS= read -r -d '' f; do
    rel="${f#"$REAL"/}"
    if [ "$(stat -c %s "$f")" -gt "$SEED_MAX_BYTES" ]; then
        echo "seed.sh: package: skipping $rel (over $SEED_MAX_BYTES bytes)" >&2
        continue
    fi
    cp "$f" "$CORPUS/package/$(slug "$rel")"
    n=$((n + 1))
done < <(find "$REAL" -type f -name '*.ipk' -print0 | sort -z)
echo "package: $n fixture packages"

if command -v dpkg-deb >/dev/null 2>&1; then
    root="$TMP/pkgroot"
    mkdir -p "$root/DEBIAN" "$root/etc" "$root/usr/bin" "$root/usr/share/doc/hello"
    cat >"$root/DEBIAN/control" <<'EOF'
Package: hello
Version: 1:2.10-3~bpo1
Architecture: all
Maintainer: Nobody <nobody@example.invalid>
Installed-Size: 12
Depends: libc6 (>= 2.34), foo | bar:any
Provides: greeter (= 2.10)
Description:  Says hello.
 A second line.
 .
 After a blank one.
EOF
    printf '/etc/hello.conf\n' >"$root/DEBIAN/conffiles"
    printf '#!/bin/sh\nexit 0\n' >"$root/DEBIAN/postinst"
    chmod 0755 "$root/DEBIAN/postinst"
    printf 'greeting=hi\n' >"$root/etc/hello.conf"
    printf '#!/bin/sh\necho hi\n' >"$root/usr/bin/hello"
    chmod 0755 "$root/usr/bin/hello"
    ln -s hello "$root/usr/bin/hi"
    head -c 3000 /dev/zero | tr '\0' 'a' >"$root/usr/share/doc/hello/README"
    n=0
    for z in gzip xz zstd none; do
        if dpkg-deb --root-owner-group -Z"$z" --build "$root" "$TMP/hello-$z.deb" >/dev/null; then
            cp "$TMP/hello-$z.deb" "$CORPUS/package/dpkg-deb-hello-$z.deb"
            n=$((n + 1))
        fi
    done
    echo "package: $n packages built by dpkg-deb"
else
    echo "seed.sh: dpkg-deb not found; no built packages" >&2
fi
# dpkg-deb no longer writes bzip2 members: an ar package of .tar.bz2 members, by hand.
if [ -d "${root:-/nonexistent}/DEBIAN" ] && command -v ar >/dev/null 2>&1; then
    (
        cd "$TMP"
        printf '2.0\n' >debian-binary
        tar --owner=0 --group=0 -cjf control.tar.bz2 -C "$root/DEBIAN" ./control ./conffiles ./postinst
        tar --owner=0 --group=0 -cjf data.tar.bz2 -C "$root" --exclude=./DEBIAN .
        ar rcD hello-bz2.ipk debian-binary control.tar.bz2 data.tar.bz2
    ) && cp "$TMP/hello-bz2.ipk" "$CORPUS/package/ar-hello-bz2.ipk" \
        && echo "package: 1 ar package with bzip2 members"
else
    echo "seed.sh: dpkg-deb not found; no built packages" >&2
fi

# --- control: Packages / Packages.manifest, and control files of the fixture packages ------
n=0
while IFS= read -r -d '' f; do
    rel="${f#"$REAL"/}"
    cp "$f" "$CORPUS/control/$(slug "$rel")"
    n=$((n + 1))
done < <(find "$REAL/feeds" -type f \( -name Packages -o -name Packages.manifest -o -name Packages.txt \) -print0 | sort -z)
echo "control: $n index files"

n=0
while IFS= read -r -d '' f; do
    rel="${f#"$REAL"/}"
    out="$CORPUS/control/control-$(slug "$rel")"
    # gzipped-tar container (OpenWrt), then ar container (opkg-utils, member names may end in /)
    if tar -xzOf "$f" ./control.tar.gz 2>/dev/null | tar -xzOf - ./control >"$out" 2>/dev/null \
        && [ -s "$out" ]; then
        n=$((n + 1))
    elif member="$(ar t "$f" 2>/dev/null | grep -m1 '^control\.tar')" \
        && ar p "$f" "$member" 2>/dev/null | tar -xzOf - ./control >"$out" 2>/dev/null \
        && [ -s "$out" ]; then
        n=$((n + 1))
    else
        rm -f "$out"
    fi
done < <(find "$REAL" -type f -name '*.ipk' -print0 | sort -z)
if [ -f "${root:-/nonexistent}/DEBIAN/control" ]; then
    cp "$root/DEBIAN/control" "$CORPUS/control/control-dpkg-deb-hello"
fi
echo "control: $n control files from packages"

# --- index: Packages files, plain and gzipped ---------------------------------------------
n=0
while IFS= read -r -d '' f; do
    rel="${f#"$REAL"/}"
    cp "$f" "$CORPUS/index/$(slug "$rel")"
    n=$((n + 1))
done < <(find "$REAL/feeds" -type f \( -name Packages -o -name Packages.gz -o -name Packages.txt \) -print0 | sort -z)
echo "index: $n index files"

# --- index_gz: plain Packages files (the text Packages.gz is built from) ------------------
n=0
while IFS= read -r -d '' f; do
    rel="${f#"$REAL"/}"
    head -c 262144 "$f" >"$CORPUS/index_gz/$(slug "$rel")"
    n=$((n + 1))
done < <(find "$REAL/feeds" -type f \( -name Packages -o -name Packages.txt \) -print0 | sort -z)
echo "index_gz: $n index files"

# --- usign: keys and signatures -----------------------------------------------------------
n=0
while IFS= read -r -d '' f; do
    rel="${f#"$REAL"/}"
    cp "$f" "$CORPUS/usign/$(slug "$rel")"
    n=$((n + 1))
done < <(find "$REAL/keys" "$REAL/feeds" -type f \
    \( -path '*/keys/*' -o -name '*.sig' -o -name '*.pub' -o -name '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]' \) \
    -print0 | sort -z)
# An unencrypted secret key (there is none among the fixtures), from the RFC 8032 test 1
# seed: "Ed" "BK" kdfrounds=0 salt checksum=sha512(seed||pk)[..8] fingerprint seed pk.
seed=9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60
pk=d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a
sum="$(printf '%s%s' "$seed" "$pk" | xxd -r -p | sha512sum | cut -c1-16)"
# (the 40 zero hex digits after "EdBK" are the 4-byte kdfrounds and the 16-byte salt)
blob="4564424b$(printf '%040d' 0)${sum}0123456789abcdef${seed}${pk}"
{
    printf 'untrusted comment: private key 0123456789abcdef\n'
    printf '%s' "$blob" | xxd -r -p | base64 -w0
    printf '\n'
} >"$CORPUS/usign/generated-secret-key"
# The same key "encrypted" with 42 rounds (parsing without a passphrase stops early).
blob42="4564424b0000002a$(printf '%032d' 0)${sum}0123456789abcdef${seed}${pk}"
{
    printf 'untrusted comment: signify secret key\n'
    printf '%s' "$blob42" | xxd -r -p | base64 -w0
    printf '\n'
} >"$CORPUS/usign/generated-secret-key-encrypted"
n=$((n + 2))
echo "usign: $n key and signature files"

# --- version / relation: field values from the Packages files ------------------------------
packages_files() {
    find "$REAL/feeds" -type f \( -name Packages -o -name Packages.txt \) -print0 | sort -z
}
fields() { # fields NAME... : every value of those fields (first line), one a line, unique
    local pattern
    pattern="$(printf '%s|' "$@")"
    pattern="^(${pattern%|}):"
    packages_files | xargs -0 cat | grep -aiE "$pattern" | sed -E 's/^[^:]*:[ \t]*//' | sort -u
}

fields Version >"$TMP/versions"
cat >>"$TMP/versions" <<'EOF'
1:2.10-3~bpo1
0:1.0
1.0~rc1-1
1.0+git20240101.abcdef-r1
2147483647:9
v8.15.0
1.0-0
EOF
# Seeds of one, two and three versions (a line each), walking the list.
split -d -a 4 -l 3 "$TMP/versions" "$CORPUS/version/versions-"
split -d -a 4 -l 2 "$TMP/versions" "$CORPUS/version/pairs-"
n="$(find "$CORPUS/version" -name 'versions-*' -o -name 'pairs-*' | wc -l)"
echo "version: $n seeds from $(wc -l <"$TMP/versions") versions"

fields Depends Pre-Depends Recommends Suggests Provides Conflicts Replaces Breaks >"$TMP/relations"
cat >>"$TMP/relations" <<'EOF'
a (>= 1.0) | b:any [amd64 !i386] <!nocheck> <stage1 cross>, c (<< 2:3-4), d (= 1), e (> 1), f (< 2)
libc6:amd64 (>= 2.34), , kmod-foo
EOF
split -d -a 4 -l 1 "$TMP/relations" "$CORPUS/relation/relations-"
n="$(find "$CORPUS/relation" -name 'relations-*' | wc -l)"
echo "relation: $n seeds"

# --- release: a few Release files (none among the fixtures) ---------------------------------
cat >"$CORPUS/release/release-openwrt" <<'EOF'
Origin: example
Label: example
Date: Sun, 22 Nov 2026 02:40:00 UTC
Valid-Until: Sun, 29 Nov 2026 02:40:00 UTC
Architectures: all x86_64
SHA256:
 063d3536d4dcfa8589a3fc74c760b4a43ae91458783f26ffce1cfd92ad78f876 1234 Packages
 063d3536d4dcfa8589a3fc74c760b4a43ae91458783f26ffce1cfd92ad78f876 567 Packages.gz
EOF
cat >"$CORPUS/release/release-offsets" <<'EOF'
Date: 29 Feb 2024 23:59:60 +0130
Valid-Until: Mon, 01 Mar 2100 00:00 -0000
SHA256:
 063D3536D4DCFA8589A3FC74C760B4A43AE91458783F26FFCE1CFD92AD78F876 0 sub/Packages
EOF
cat >"$CORPUS/release/release-minimal" <<'EOF'
date: 1 Jan 1970 00:00 GMT
sha256:
EOF
echo "release: 3 seeds"

# --- parse_date: the dates of those Release files, and edge cases, one a seed ----------------
n=0
while IFS= read -r d; do
    printf '%s' "$d" >"$CORPUS/parse_date/date-$n"
    n=$((n + 1))
done < <(
    grep -ahiE '^(date|valid-until):' "$CORPUS/release/"release-* | sed -E 's/^[^:]*:[ \t]*//'
    cat <<'EOF'
Thu, 01 Jan 1970 00:00:00 UTC
Fri, 31 Dec 9999 23:59:59 UTC
Tue, 29 Feb 2000 00:00:00 GMT
Sun, 29 Feb 2100 00:00:00 UTC
1 Jan 1970 00:59 +0100
31 Dec 9999 23:59:59 -2359
Sat, 21 Nov 2026 23:10:00 -0330
Sun,22 Nov 2026 02:40:60 Z
22 Nov 2026 02:40 UT
Sun, 22 Nov 2026 02:40:00 +0é0
EOF
)
echo "parse_date: $n seeds"

# --- prokit_config: opkg.conf files -----------------------------------------------------------
cat >"$CORPUS/prokit_config/opkg.conf-openwrt" <<'EOF'
dest root /
dest ram /tmp
lists_dir ext /var/opkg-lists
option overlay_root /overlay
option check_signature
arch all 1
arch noarch 1
arch x86_64 10
EOF
cat >"$CORPUS/prokit_config/distfeeds.conf-openwrt" <<'EOF'
src/gz openwrt_core https://downloads.openwrt.org/releases/23.05.3/targets/x86/64/packages
src/gz openwrt_base https://downloads.openwrt.org/releases/23.05.3/packages/x86_64/base/
src/gz openwrt_luci https://downloads.openwrt.org/releases/23.05.3/packages/x86_64/luci
# src/gz openwrt_telephony https://downloads.openwrt.org/releases/23.05.3/packages/x86_64/telephony
EOF
printf 'src/gz base http://feed.example/ipk/all\r\nsrc   updates\thttp://feed.example/ipk/updates//\r\n\r\n  # customfeeds\r\noption check_signature 0\r\noption keyring example\r\noption require_release 1\r\n' \
    >"$CORPUS/prokit_config/customfeeds.conf-crlf"
cat >"$CORPUS/prokit_config/opkg.conf-yocto" <<'EOF'
src oe file:///srv/deploy/ipk
src oe-all file:///srv/deploy/ipk/all
dest root /
option db_dir /var/lib/opkg
option lists_dir /var/lib/opkg/lists
option ca_file /etc/ssl/certs/ca-certificates.crt
lists_dir ext /var/lib/opkg/lists
arch all 1
arch any 6
arch cortexa53 16
arch raspberrypi3_64 21
arch all 2
EOF
echo "prokit_config: 4 seeds"

# --- prokit_policy: policy.conf files ---------------------------------------------------------
cat >"$CORPUS/prokit_policy/every-rule" <<'EOF'
# site policy
deny setuid
deny devices
deny scripts
allow scripts base-files luci-*
deny packages telnetd *-dev
require developer-signature
allow keys 0123456789abcdef FEDCBA9876543210  # the store
EOF
printf 'deny setuid\ndeny suid\n' >"$CORPUS/prokit_policy/unknown-rule"
printf 'allow scripts x\n' >"$CORPUS/prokit_policy/allow-without-deny"
printf 'allow keys 1234\n' >"$CORPUS/prokit_policy/short-key"
echo "prokit_policy: 4 seeds"

# --- prokit_status: status files (NUL, then the first package's .list, NUL, its sidecar) -----
hash64=063d3536d4dcfa8589a3fc74c760b4a43ae91458783f26ffce1cfd92ad78f876
cat >"$TMP/status" <<EOF
Package: busybox
Version: 1.36.1-1
Depends: libc, libcrypt-compat
Status: install user installed
Essential: yes
Architecture: x86_64
Conffiles:
 /etc/syslog.conf $hash64
 /etc/inittab 5d41402abc4b2a76b9719d911017c592
Installed-Time: 1700000000

Package: libc
Version: 1.2.4-4
Provides: libc.so.6
Status: install ok installed
Architecture: x86_64
Installed-Time: 1700000000
Auto-Installed: yes

Package: oldpkg
Version: 0.1
Status: deinstall ok config-files
Architecture: all
Conffiles:
 /etc/oldpkg.conf $hash64

Package: tool
Version: 2:3.0~rc1-r2
Pre-Depends: busybox (>= 1.36)
Status: install ok half-configured
Architecture: all
Installed-Time: 1700000001
Prokit-Scripts: skipped

EOF
cp "$TMP/status" "$CORPUS/prokit_status/status-opkg"
{
    cat "$TMP/status"
    printf '\0/bin/busybox\n/bin/sh\t0777\tbusybox\n/etc/syslog.conf\n/usr/share/busybox/\n\0'
    printf '# prokit-sha256\t1\tbusybox\t1.36.1-1\n'
    printf 'f\t0755\t%s\t/bin/busybox\n' "$hash64"
    printf 'l\t0777\tbusybox\t/bin/sh\n'
    printf 'd\t0755\t-\t/usr/share/busybox\n'
    printf 's\t0644\t-\t/dev/console\n'
} >"$CORPUS/prokit_status/status-with-list-and-sidecar"
printf 'Package: only\nVersion: 1\nStatus: install ok installed\n' >"$CORPUS/prokit_status/status-one"
echo "prokit_status: 3 seeds"

# --- prokit_resolve: Packages files of the fixtures and small universes ---------------------
n=0
while IFS= read -r -d '' f; do
    rel="${f#"$REAL"/}"
    cp "$f" "$CORPUS/prokit_resolve/$(slug "$rel")"
    n=$((n + 1))
done < <(find "$REAL/feeds" -type f -name Packages -print0 | sort -z)
cat >"$CORPUS/prokit_resolve/universe-alternatives" <<'EOF'
Package: app
Version: 1.0
Depends: libfoo (>= 2) | libbar, virt (= 1.2), libc
Pre-Depends: base
Conflicts: oldapp (<< 1)
Replaces: oldapp

Package: libfoo
Version: 1.0
Architecture: x86_64

Package: libfoo
Version: 2.1-1
Depends: libc

Package: libbar
Version: 0.9
Provides: virt (= 1.2)

Package: base
Version: 1
Provides: virt

Package: oldapp
Version: 0.5
Status: install user installed

Package: libc
Version: 1.2.4
Status: install ok installed
Auto-Installed: yes
EOF
cat >"$CORPUS/prokit_resolve/universe-cycle" <<'EOF'
Package: a
Version: 1
Pre-Depends: b

Package: b
Version: 1
Pre-Depends: a

Package: c
Version: 1
Depends: a | d
EOF
cat >"$CORPUS/prokit_resolve/universe-upgrade" <<'EOF'
Package: web
Version: 2.0
Depends: tls (>= 3)
Breaks: plugin (<< 2)

Package: tls
Version: 3.1
Conflicts: tls-legacy

Package: tls
Version: 2.9
Status: install ok installed

Package: plugin
Version: 1.0
Depends: web (<< 2)
Status: install user installed

Package: plugin
Version: 2.0
Depends: web (>= 2)

Package: tls-legacy
Version: 1
Status: install ok installed
EOF
echo "prokit_resolve: $n Packages files and 3 universes"

# --- keyring_manifest / keyring_signatures / keyring_package ---------------------------------
# Keys from the RFC 8032 test vectors (public halves), under chosen usign fingerprints.
root_fp=0123456789abcdef
root_pk=d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a
feed_fp=fedcba9876543210
feed_pk=3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c
old_fp=89abcdef01234567
old_pk=fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025
b64() { xxd -r -p | base64 -w0; }
key_b64() { printf '4564%s%s' "$1" "$2" | b64; }                   # "Ed" fp pk
rfc_date() { LC_ALL=C date -u -d "@$1" '+%a, %d %b %Y %H:%M:%S UTC'; }
key_stanza() { # fp pk role status [not-after] [comment]
    printf '\nFingerprint: %s\nPublic-Key: %s\nRole: %s\nStatus: %s\n' "$1" "$(key_b64 "$1" "$2")" "$3" "$4"
    if [ -n "${5:-}" ]; then printf 'Not-After: %s\n' "$(rfc_date "$5")"; fi
    if [ -n "${6:-}" ]; then printf 'Comment: %s\n' "$6"; fi
}
header() { # serial date expires threshold
    printf 'Keyring: example\nSerial: %s\nDate: %s\nExpires: %s\nRoot-Threshold: %s\n' \
        "$1" "$(rfc_date "$2")" "$(rfc_date "$3")" "$4"
}
# A usign signature block; the signature bytes are a stand-in (parsing does not verify).
sig_block() { # fp message-file
    printf 'untrusted comment: signed by key %s\n' "$1"
    { printf '4564%s' "$1"; sha512sum "$2" | cut -c1-128; } | b64
    printf '\n'
}
t0=1795315200 # Sun, 22 Nov 2026 00:00:00 UTC
year=31536000
{ header 1 "$t0" $((t0 + year)) 1; key_stanza "$root_fp" "$root_pk" root active; } >"$TMP/keyring-1"
{
    header 2 $((t0 + 86400)) $((t0 + 2 * year)) 1
    key_stanza "$root_fp" "$root_pk" root active $((t0 + 4 * year)) "offline root, safe 1"
    key_stanza "$old_fp" "$old_pk" root retired
    key_stanza "$feed_fp" "$feed_pk" feed active "" "feed signer (CI)"
} >"$TMP/keyring-2"
{
    header 3 $((t0 + 2 * 86400)) $((t0 + 2 * year)) 2
    key_stanza "$root_fp" "$root_pk" root active
    key_stanza "$old_fp" "$old_pk" root active
    key_stanza "$feed_fp" "$feed_pk" feed revoked
} >"$TMP/keyring-3"
for s in 1 2 3; do
    cp "$TMP/keyring-$s" "$CORPUS/keyring_manifest/keyring-serial-$s"
done
sig_block "$root_fp" "$TMP/keyring-1" >"$TMP/keyring-1.sig"
{ sig_block "$root_fp" "$TMP/keyring-2"; sig_block "$old_fp" "$TMP/keyring-2"; } >"$TMP/keyring-2.sig"
cp "$TMP/keyring-1.sig" "$CORPUS/keyring_signatures/keyring-one-block.sig"
cp "$TMP/keyring-2.sig" "$CORPUS/keyring_signatures/keyring-two-blocks.sig"
: >"$CORPUS/keyring_signatures/keyring-empty.sig"
n=3
while IFS= read -r -d '' f; do # real usign signatures, and two of them concatenated
    rel="${f#"$REAL"/}"
    cp "$f" "$CORPUS/keyring_signatures/$(slug "$rel")"
    n=$((n + 1))
done < <(find "$REAL/feeds" -type f -name '*.sig' -print0 | sort -z)
find "$REAL/feeds" -type f -name '*.sig' -print0 | sort -z | head -z -n 2 | xargs -0 cat \
    >"$CORPUS/keyring_signatures/real-concatenated.sig"
echo "keyring_manifest: 3 seeds; keyring_signatures: $((n + 1)) seeds"

# Keyring packages as build_package lays them out (gzipped-tar container).
keyring_ipk() { # out serial with-history
    local out="$1" serial="$2" history="$3" d="$TMP/kpkg"
    rm -rf "$d" && mkdir -p "$d/control" "$d/data/etc/opkg/keys" "$d/data/usr/share/keyrings/example"
    local base="$d/data/usr/share/keyrings/example"
    cp "$TMP/keyring-$serial" "$base/keyring"
    cp "$TMP/keyring-$serial.sig" "$base/keyring.sig"
    if [ "$history" = 1 ]; then
        mkdir -p "$base/history"
        for ((s = 1; s < serial; s++)); do
            cp "$TMP/keyring-$s" "$base/history/$s.keyring"
            cp "$TMP/keyring-$s.sig" "$base/history/$s.sig"
        done
    fi
    if grep -q '^Role: feed' "$TMP/keyring-$serial"; then
        { printf 'untrusted comment: public key %s\n' "$feed_fp"; key_b64 "$feed_fp" "$feed_pk"; printf '\n'; } \
            >"$d/data/etc/opkg/keys/$feed_fp"
    fi
    printf 'Package: example-keyring\nVersion: %s\nArchitecture: all\nSection: base\nDescription: usign keys of feed keyring example, serial %s\n' \
        "$serial" "$serial" >"$d/control/control"
    printf '2.0\n' >"$d/debian-binary"
    local tarflags=(--sort=name --owner=0 --group=0 --numeric-owner --mtime=@1795315200 --format=gnu)
    tar "${tarflags[@]}" -czf "$d/data.tar.gz" -C "$d/data" .
    tar "${tarflags[@]}" -czf "$d/control.tar.gz" -C "$d/control" .
    tar "${tarflags[@]}" -czf "$out" -C "$d" ./debian-binary ./data.tar.gz ./control.tar.gz
}
keyring_ipk "$CORPUS/keyring_package/example-keyring_1_all.ipk" 1 0
keyring_ipk "$CORPUS/keyring_package/example-keyring_2_all.ipk" 2 1
echo "keyring_package: 2 packages"

# --- audit_log: logs as audit_log::Log writes them (docs/on-disk-state.md §5) ---------------
sha() { printf '%s' "$1" | sha256sum | cut -c1-64; }
audit_line() { # prev event [fields, as JSON members]: a record, `hash` last
    local body="{\"prev\":\"$1\",\"time\":\"2026-12-05T00:01:02Z\",\"tool\":\"prokit\",\"version\":\"0.1.0\",\"user\":\"root\",\"host\":\"box\",\"pid\":4242,\"event\":\"$2\"${3:+,$3}"
    printf '%s,"hash":"%s"}' "$body" "$(sha "$body")"
}
a1="$(audit_line "$(printf '%064d' 0)" package-installed '"name":"foo","package_version":"1.0-r1"')"
a2="$(audit_line "$(sha "$a1")" key-added '"fingerprint":"0123456789abcdef","role":"feed"')"
a3="$(audit_line "$(sha "$a2")" package-removed '"name":"foo","url":"https://feed.example/ipk?token=***"')"
torn="${a3:0:100}"
restart="$(audit_line "$(sha "$torn")" chain-restarted '"reason":"torn last line 3","torn_line":3')"
a4="$(audit_line "$(sha "$restart")" signature-check-disabled '"feed":"base","nested":{"a":[1,2.5,null,true]}')"
printf '%s\n%s\n%s\n' "$a1" "$a2" "$a3" >"$CORPUS/audit_log/intact"
printf '%s\n%s\n%s\n%s\n%s\n' "$a1" "$a2" "$torn" "$restart" "$a4" >"$CORPUS/audit_log/torn-and-restarted"
printf '%s\n%s\n%s' "$a1" "$a2" "$torn" >"$CORPUS/audit_log/torn-end"
printf '%s\n%s\n' "$a2" "$a3" >"$CORPUS/audit_log/first-line-deleted"
printf '%s\n%s\n' "$a1" "${a2/0123/4567}" >"$CORPUS/audit_log/altered"
: >"$CORPUS/audit_log/empty"
echo "audit_log: 6 seeds"

# --- archman_cache: segments of records as archman writes them (archman/src/cache.rs) ------
# A first byte of 1 has the target wrap the rest in a genuine header and MAC; 0 takes the
# rest as the whole file.
cache_entry() { # path stanza [md5]: an entry record
    printf 'E %d 1234 1700000000 5 1700000100 6 42 %s %s tgz %d\n%s\n%s\n' \
        "${#1}" "$(printf '%s' "$1" | sha256sum | cut -c1-64)" "${3:--}" "${#2}" "$1" "$2"
}
s1=$'Package: foo\nVersion: 1.0-r1\nArchitecture: all\nFilename: pool/foo_1.0-r1_all.ipk\nSize: 1234'
s2=$'Package: bar\nVersion: 2:3.4~rc1-2\nDescription: a bar\n with a second line'
{
    printf '\001'
    printf 'S %s %s 0123456789abcdef\n' "$(printf a | sha256sum | cut -c1-64)" "$(printf b | sha256sum | cut -c1-64)"
    cache_entry pool/foo_1.0-r1_all.ipk "$s1"
    cache_entry "bar_3.4.ipk" "$s2" 0123456789abcdef0123456789abcdef
    printf 'D 9\ngone/x.ipk\n'
    printf 'P 8 100 1700000000 1 1700000000 2 7 %s\nPackages\n' "$(printf c | sha256sum | cut -c1-64)"
    printf 'P 11 20 1700000000 1 1700000000 2 8 -\nPackages.gz\n'
} >"$CORPUS/archman_cache/segment"
{ printf '\001'; cache_entry a.ipk "Package: a"; cache_entry a.ipk "Package: a2"; printf 'D 5\na.ipk\nS -\n'; } \
    >"$CORPUS/archman_cache/override-and-gone"
{ printf '\000archman-cache 6\n28\n/srv/feed md5=0 profile=Full\n'; cache_entry a.ipk "Package: a"; printf 'END %064d\n' 0; } \
    >"$CORPUS/archman_cache/whole-file-bad-mac"
echo "archman_cache: 3 seeds"

for t in $TARGETS; do
    printf '%-18s %5d files\n' "$t" "$(find "$CORPUS/$t" -type f | wc -l)"
done
