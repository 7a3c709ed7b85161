#!/usr/bin/env bash
# keygen.sh: a device's P-256 key pair: a PKCS#8 private key (mode 600, stays on the device) and its SPKI public key
# (goes to Key Vault with register-key.sh). Refuses to overwrite either file.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: keygen.sh [--private-key FILE] [--public-key FILE] [--registration-id ID] [--dry-run]

Makes a P-256 (prime256v1, ES256) key pair with openssl:
  openssl ecparam -name prime256v1 -genkey -noout      (SEC1, in a private temp dir)
  openssl pkcs8 -topk8 -nocrypt                         -> private key, PKCS#8 PEM, mode 600
  openssl pkey -pubout                                  -> public key, SPKI PEM ("BEGIN PUBLIC KEY")

Options:
  --registration-id ID  name the files ID.key.pem and ID.pub.pem (in the current directory)
  --private-key FILE    where the private key goes (default: device.key.pem, or ID.key.pem)
  --public-key FILE     where the public key goes (default: the private key's name with .key.pem -> .pub.pem)
  --dry-run             print the commands, run none
  -h, --help            this text

Existing files are never overwritten. The private key never leaves the device; register the .pub.pem with
register-key.sh.
EOF
}

PRIVATE_KEY=''
PUBLIC_KEY=''
REGISTRATION_ID=''
while [[ $# -gt 0 ]]; do
  case $1 in
    --private-key) PRIVATE_KEY=$(opt_value "$@"); shift 2 ;;
    --public-key) PUBLIC_KEY=$(opt_value "$@"); shift 2 ;;
    --registration-id) REGISTRATION_ID=$(opt_value "$@"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done

if [[ -n $REGISTRATION_ID ]]; then
  check_registration_id --registration-id "$REGISTRATION_ID"
  PRIVATE_KEY=${PRIVATE_KEY:-$REGISTRATION_ID.key.pem}
fi
PRIVATE_KEY=${PRIVATE_KEY:-device.key.pem}
if [[ -z $PUBLIC_KEY ]]; then
  if [[ $PRIVATE_KEY == *.key.pem ]]; then PUBLIC_KEY=${PRIVATE_KEY%.key.pem}.pub.pem; else PUBLIC_KEY=$PRIVATE_KEY.pub.pem; fi
fi
if [[ $PRIVATE_KEY == "$PUBLIC_KEY" ]]; then usage_error "--public-key must differ from --private-key"; fi
for file in "$PRIVATE_KEY" "$PUBLIC_KEY"; do
  if [[ -e $file || -L $file ]]; then
    flag=--private-key
    if [[ $file == "$PUBLIC_KEY" ]]; then flag=--public-key; fi
    fail "$flag $file already exists; refusing to overwrite a key (move it away or choose another name)"
  fi
  dir=$(dirname "$file")
  if [[ ! -d $dir ]]; then usage_error "$file: no such directory: $dir"; fi
done

command -v openssl >/dev/null 2>&1 || fail "openssl is not on PATH"

if [[ $DRY_RUN == 1 ]]; then
  work='<private-temp-dir>'
else
  work=$WORK_DIR # lib.sh's private directory: removed on exit, Ctrl-C or SIGTERM
fi
umask 077
call -- openssl ecparam -name prime256v1 -genkey -noout -out "$work/sec1.pem"
call -- openssl pkcs8 -topk8 -nocrypt -in "$work/sec1.pem" -out "$PRIVATE_KEY"
call -- chmod 600 "$PRIVATE_KEY"
call -- openssl pkey -in "$PRIVATE_KEY" -pubout -out "$PUBLIC_KEY"
call -- chmod 644 "$PUBLIC_KEY"

if [[ $DRY_RUN != 1 ]]; then
  say "private key: $PRIVATE_KEY (PKCS#8, mode 600; keep it on the device)"
  say "public key:  $PUBLIC_KEY (register it: scripts/register-key.sh --public-key $PUBLIC_KEY ...)"
fi
