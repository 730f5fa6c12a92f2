#!/usr/bin/env bash
# Builds the schema-version-1 fixture vault with the CLI of the commit that last wrote version 1
# (a352172 or its merge d90c662). Run from a checkout of that commit:
#   cargo build --release && tests/testdata/vault-v1/make.sh target/release/facevault
# It writes vault.db, master.key and v1-view.json (what that version's CLI shows of the vault:
# subjects, audit records, stats) beside this script. tests/migration.rs opens the vault with the
# current code, migrates it, and checks every subject, consent and audit record against the view.
set -euo pipefail
fv=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
row() { python3 -c "import struct,sys; sys.stdout.buffer.write(struct.pack('<8f', *map(float, sys.argv[1:])))" "$@"; }
row 1 0 0 0 0 0 0 0 > a.f32
row 0 1 0 0 0 0 0 0 > b.f32
row 0 0 1 0 0 0 0 0 > c.f32
row 0 0 0 1 0 0 0 0 > d.f32
row 0 0 0 0 1 0 0 0 > e.f32
row 1 1 0 0 0 0 0 0 > a2.f32
row 0.9 0.1 0 0 0 0 0 0 > probe.f32
notice() {
    cat > "notice-$1.json" <<JSON
{"version":"$1","processor_name":"Fixture Ltd","processor_contact":"dpo@fixture.example","purpose":"door access","method":"1:N at the door","retention":"one year","necessity_and_impact":"fixture","rights":"ask the desk"}
JSON
}
fv() { command "$fv" --json --db vault.db --key-file master.key "$@"; }
id() { python3 -c "import json,sys; print(json.load(sys.stdin)['subject'])"; }
export FACEVAULT_PASSWORD='admin password 1'
fv init --dim 8 --admin admin --model fixture-model --threshold 0.5 >/dev/null
for user in desk:enroller gate:operator auditor:auditor exporter:exporter; do
    FACEVAULT_NEW_PASSWORD="${user%%:*} password 1" fv --as admin user add "${user%%:*}" --role "${user##*:}" >/dev/null
done
notice 2026-01; fv --as admin notice publish --file notice-2026-01.json >/dev/null
export FACEVAULT_PASSWORD='desk password 1'
a=$(fv --as desk enrol --template a.f32 --notice 2026-01 --consent-method "signed form" --transfer-consent | id)
fv --as desk enrol --subject "$a" --template a2.f32 >/dev/null
b=$(fv --as desk enrol --template b.f32 --notice 2026-01 --consent-method "signed form" \
    --birth-date 2018-05-01 --guardian "Li Na, mother" | id)
c=$(fv --as desk enrol --template c.f32 --notice 2026-01 --consent-method "signed form" | id)
d=$(fv --as desk enrol --template d.f32 --notice 2026-01 --consent-method "signed form" --retention-days 30 | id)
FACEVAULT_PASSWORD='admin password 1' notice 2026-06
FACEVAULT_PASSWORD='admin password 1' fv --as admin notice publish --file notice-2026-06.json >/dev/null
e=$(fv --as desk enrol --template e.f32 --notice 2026-06 --consent-method "tablet, desk 2" | id)
fv --as desk consent withdraw --subject "$c" >/dev/null
fv --as desk erase --subject "$d" >/dev/null
FACEVAULT_PASSWORD='gate password 1' fv --as gate verify --subject "$a" --probe probe.f32 >/dev/null
FACEVAULT_PASSWORD='gate password 1' fv --as gate identify --probe probe.f32 --k 3 >/dev/null
FACEVAULT_PASSWORD='wrong password' fv --as gate stats >/dev/null 2>&1 || true
FACEVAULT_PASSWORD='gate password 1' fv --as gate erase --subject "$a" >/dev/null 2>&1 || true
export FACEVAULT_PASSWORD='auditor password 1'
fv --as auditor audit verify >/dev/null
{
    printf '{"subjects":{"adult_with_transfer":"%s","child":"%s","withdrawn":"%s","erased":"%s","second_notice":"%s"},' "$a" "$b" "$c" "$d" "$e"
    printf '"listed":'; fv --as auditor subjects
    printf ',"audit":'; fv --as auditor audit show
    printf '}\n'
} > v1-view.json
cp vault.db master.key v1-view.json "$here/"
test ! -e vault.db-wal || { echo "the WAL was not folded in" >&2; exit 1; }
