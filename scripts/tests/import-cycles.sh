#!/usr/bin/env bash
# Issue 12's proof: no module of any crate imports one that imports it back (directly or around
# a longer loop); scripts/import-cycles.py finds circles, shown here on a crate made to have one.
. "$(dirname "$0")/lib.sh"

out=$(python3 scripts/import-cycles.py 2>&1); rc=$?
if [ $rc -eq 0 ]; then ok "no import circles in the workspace"; else fail "import circles in the workspace" "$out"; fi

# a crate with a circle a -> b -> c -> a, a child using its parent (not a circle) and braces
c=$T_TMP/circle; mkdir -p "$c/src/a"
printf 'mod a;\nmod b;\nmod c;\n' > "$c/src/lib.rs"
printf 'mod inner;\nuse crate::{b::B, c};\npub struct A;\n' > "$c/src/a/mod.rs"
printf 'use super::A; // the parent: fine\npub struct In;\n' > "$c/src/a/inner.rs"
printf '// use crate::a::A; (a comment, not a use)\nuse crate::c::{self as cc, C};\npub struct B;\n' > "$c/src/b.rs"
printf 'pub struct C(crate::a::A);\n' > "$c/src/c.rs"
out=$(python3 scripts/import-cycles.py "$c" 2>&1); rc=$?
check "a crate with a circle fails" [ $rc -eq 1 ]
contains "the circle is named" "$out" "circle: a <-> b <-> c"
contains "with the reference that closes it" "$out" "c uses crate::a::A"
not_contains "a comment is not a reference" "$out" "b uses crate::a::A"
not_contains "a child using its parent is not a circle" "$out" "inner"

# the same crate without the closing reference has none
printf 'pub struct C;\n' > "$c/src/c.rs"
out=$(python3 scripts/import-cycles.py "$c" 2>&1); rc=$?
check "without the closing reference: no circle" [ $rc -eq 0 ]
finish
