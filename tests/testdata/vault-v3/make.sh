#!/usr/bin/env bash
# Builds the schema-version-3 fixture vault with the CLI of the last commit that writes version 3.
# Run from a checkout of that commit:
#   cargo build --release && tests/testdata/vault-v3/make.sh target/release/facevault
# It writes vault.db, master.key, the counter and erasure-ledger files beside the key, the
# auditor's verification key, and v3-view.json (what that version's CLI shows of the vault:
# subjects, audit records, alerts) beside this script. tests/lifecycle.rs opens the vault with the
# current code (migrating it once a newer format exists) and checks every subject and audit
# record against the view.
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
row 0 0 0 0 0 0 0 1 > stranger.f32
notice() {
    cat > "notice-$1.json" <<JSON
{"version":"$1","processor_name":"Fixture Ltd","processor_contact":"dpo@fixture.example","purpose":"door access","method":"1:N at the door","retention":"one year","necessity_and_impact":"fixture","rights":"ask the desk"}
JSON
}
fv() { command "$fv" --json --db vault.db --key-file master.key "$@"; }
id() { python3 -c "import json,sys; print(json.load(sys.stdin)['subject'])"; }
export FACEVAULT_PASSWORD='admin password 1'
fv init --dim 8 --admin admin --model fixture-model --threshold 0.5 --audit-key-out audit.key \
    --audit-epoch-records 8 --score-roles admin,auditor >/dev/null
for user in desk:enroller gate:operator auditor:auditor exporter:exporter spare:operator; do
    FACEVAULT_NEW_PASSWORD="${user%%:*} password 1" fv --as admin user add "${user%%:*}" --role "${user##*:}" >/dev/null
done
notice 2026-01; fv --as admin notice publish --file notice-2026-01.json >/dev/null
fv --as admin user set-role spare --role auditor >/dev/null
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
# A second face model (format version 3): subject e gains a template of it.
row4() { python3 -c "import struct,sys; sys.stdout.buffer.write(struct.pack('<4f', *map(float, sys.argv[1:])))" "$@"; }
row4 0 1 0 0 > e-model2.f32
FACEVAULT_PASSWORD='admin password 1' fv --as admin model add fixture-model-2 --dim 4 --threshold 0.6 >/dev/null
fv --as desk enrol --subject "$e" --template e-model2.f32 --model fixture-model-2 >/dev/null
export FACEVAULT_PASSWORD='gate password 1'
fv --as gate verify --subject "$a" --probe probe.f32 >/dev/null
fv --as gate identify --probe probe.f32 --k 3 >/dev/null
# Five failed verifies of one subject: its verify is throttled (a throttle row, an alert).
for _ in 1 2 3 4 5; do fv --as gate verify --subject "$e" --probe stranger.f32 >/dev/null 2>&1 || true; done
# Two wrong passwords: a failure count in the principal's row.
for _ in 1 2; do FACEVAULT_PASSWORD='wrong password' fv --as spare stats >/dev/null 2>&1 || true; done
fv --as gate erase --subject "$a" >/dev/null 2>&1 || true
FACEVAULT_PASSWORD='admin password 1' fv --as admin backup --out backup.fvbackup >/dev/null
export FACEVAULT_PASSWORD='auditor password 1'
fv --as auditor audit verify >/dev/null
{
    printf '{"subjects":{"adult_with_transfer":"%s","child":"%s","withdrawn":"%s","erased":"%s","second_notice":"%s"},' "$a" "$b" "$c" "$d" "$e"
    printf '"listed":'; fv --as auditor subjects
    printf ',"alerts":'; fv --as auditor alerts
    printf ',"audit":'; fv --as auditor audit show
    printf '}\n'
} > v3-view.json
test ! -e vault.db-wal || { echo "the WAL was not folded in" >&2; exit 1; }
cp vault.db master.key master.key.*.counter master.key.*.erasures audit.key backup.fvbackup v3-view.json "$here/"
