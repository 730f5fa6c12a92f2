#!/usr/bin/env bash
# Renders the compliance report's page of a small example vault to docs/compliance-report.png,
# the picture the README shows. Not part of CI. Needs Debian's chromium (apt-get install chromium)
# and python3; builds the CLI in release mode.
#
#   scripts/render-compliance-report.sh
#
# The vault: the profile and assessment of examples/governance, China's 2025 holiday calendar, a
# filing threshold of 50 (so that the filing clock runs), 60 residents enrolled under the first
# notice and 10 under a second (so that 60 are due to be told of it), 5 of them kept only 20 days.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --quiet --bin facevault
fv_bin="$root/target/release/facevault"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
rows() { python3 -c "
import random, struct, sys
random.seed(int(sys.argv[2]))
n, dim = int(sys.argv[1]), 64
sys.stdout.buffer.write(b''.join(struct.pack('<%df' % dim, *[random.gauss(0, 1) for _ in range(dim)]) for _ in range(n)))
" "$@"; }
notice() {
    cat > "notice-$1.json" <<JSON
{"version":"$1","processor_name":"Acme Property Management Co., Ltd.","processor_contact":"privacy@acme.example",
 "purpose":"entry to residential building 3 for its residents","method":"1:N face identification at the lobby turnstiles",
 "retention":"while you live here, at most one year","necessity_and_impact":"IC cards were lent and copied; a leak would expose a face template",
 "rights":"withdraw or ask for erasure at the desk or privacy@acme.example"}
JSON
}
fv() { "$fv_bin" --json --db vault.db --key-file master.key "$@"; }
export FACEVAULT_PASSWORD='admin password 1'
fv init --dim 64 --admin admin --model arcface-r100 --filing-threshold 50 \
    --profile "$root/examples/governance/profile.json" >/dev/null
FACEVAULT_NEW_PASSWORD='desk password 1' fv --as admin user add desk --role enroller >/dev/null
FACEVAULT_NEW_PASSWORD='auditor password 1' fv --as admin user add auditor --role auditor >/dev/null
notice 2026-11 && fv --as admin notice publish --file notice-2026-11.json >/dev/null
fv --as admin pia add --file "$root/examples/governance/assessment.json" >/dev/null
fv --as admin filing calendar --file "$root/examples/governance/calendar-2025.json" >/dev/null
rows 55 1 > residents.f32 && rows 5 2 > short-stay.f32 && rows 10 3 > new.f32
export FACEVAULT_PASSWORD='desk password 1'
fv --as desk enrol-batch --templates residents.f32 --notice 2026-11 --consent-method "signed form at the desk" >/dev/null
fv --as desk enrol-batch --templates short-stay.f32 --notice 2026-11 --consent-method "signed form at the desk" \
    --retention-days 20 >/dev/null
FACEVAULT_PASSWORD='admin password 1' notice 2026-12
FACEVAULT_PASSWORD='admin password 1' fv --as admin notice publish --file notice-2026-12.json >/dev/null
fv --as desk enrol-batch --templates new.f32 --notice 2026-12 --consent-method "tablet at the desk" >/dev/null
FACEVAULT_PASSWORD='auditor password 1' fv --as auditor compliance --html report.html >/dev/null
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$work/chromium" --hide-scrollbars \
    --window-size=1000,2200 --screenshot="$root/docs/compliance-report.png" "file://$work/report.html" 2>/dev/null
echo "wrote docs/compliance-report.png"
