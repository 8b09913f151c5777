#!/usr/bin/env bash
# Static checks of the deployment files (no provider download, no Docker needed): Terraform
# formatting when terraform is installed, checkov with no failed check, the wiring tests over
# the parsed HCL, and the parse tests of the compose files CI cannot run (infra/ and
# localstack/). Installs checkov and python-hcl2 (pinned; checkov brings PyYAML) in their own
# venv the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
VENV=$SCREENREC_TOOLS/checkov
if ! "$VENV/bin/python" -c 'import checkov, hcl2, yaml' >/dev/null 2>&1; then
  echo "installing checkov"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'checkov==3.3.30' 'python-hcl2==8.1.4'
fi
if command -v terraform >/dev/null 2>&1; then
  echo "-- terraform fmt -check"
  terraform fmt -check -recursive terraform
fi
# checkov exits 0 when it cannot parse a file, so the tests below parse every file too.
echo "-- checkov"
"$VENV/bin/checkov" -d terraform --framework terraform --skip-download --compact --quiet
echo "-- terraform wiring tests"
"$VENV/bin/python" -m unittest discover -s terraform/tests
echo "-- compose file tests (infra/, localstack/)"
"$VENV/bin/python" -m unittest discover -s infra/tests
