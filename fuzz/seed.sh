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

for t in control version relation package usign index release; do
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

for t in control version relation package usign index release; do
    printf '%-9s %5d files\n' "$t" "$(find "$CORPUS/$t" -type f | wc -l)"
done
