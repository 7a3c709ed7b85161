# shellcheck shell=bash
# scripts/lib.sh: shared by every script in scripts/. Source it; do not run it.
#
#   call       the ONE function every az call (and npm, zip, func, openssl) goes through: it prints the command
#              (secrets masked) and runs it, or with --dry-run only prints it.
#   mask       replaces every registered secret (function keys, symmetric keys, SAS, connection strings) by ***.
#   new_temp_file  a 0600 file in the script's private 0700 temporary directory, removed on exit, Ctrl-C, SIGTERM.
#   secret_state, secret_deleted, public_key_digest: Key Vault secrets read by metadata, never by value.
#   opt_value, require, usage_error, check_*: argument checks that fail naming the argument (exit 2).
#   device_secret_name, group_secret_name: the webhook's Key Vault naming rule (functions/keys/names.ts).
#
# Exit codes: 0 done, 1 an Azure (or tool) command failed or the state forbids the action, 2 a bad or missing argument.

if [[ -n "${DPSJWT_LIB_LOADED:-}" ]]; then return 0; fi
DPSJWT_LIB_LOADED=1

SCRIPT_NAME=$(basename "$0")
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
DRY_RUN=0
SECRETS=()
# fd 3 is the script's own stdout, so --dry-run can print a command even from inside $(...).
exec 3>&1

# ---------------------------------------------------------------------------------------------------------------------
# Temporary files: all of them live in one private directory (0700, files 0600) that is removed on exit, on Ctrl-C
# and on SIGTERM, also while an az call is running (call waits for it in the background, so a signal is handled at
# once, and the call is stopped first).

WORK_DIR=''
CHILD_PID=''

cleanup_work_dir() {
  if [[ -n $CHILD_PID ]]; then kill -TERM "$CHILD_PID" 2>/dev/null || true; fi
  if [[ -n $WORK_DIR ]]; then rm -rf -- "$WORK_DIR"; fi
  WORK_DIR=''
}

# on_signal SIG: clean up, then die of SIG as if no trap were set (the caller sees 130 for INT, 143 for TERM).
on_signal() {
  cleanup_work_dir
  trap - "$1" EXIT
  kill -s "$1" "$$"
}

trap cleanup_work_dir EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP

# work_dir: creates the private directory on first use. Its name is recorded for the trap BEFORE mkdir creates it,
# so no signal can leave it behind; mkdir refuses a path that already exists (no symlink games in a shared /tmp).
work_dir() {
  if [[ -n $WORK_DIR ]]; then return 0; fi
  local dir=${TMPDIR:-/tmp}
  dir="${dir%/}/dpsjwt.$$.$RANDOM$RANDOM"
  WORK_DIR=$dir
  if ! mkdir -m 700 -- "$dir"; then
    WORK_DIR=''
    fail "cannot create the private temporary directory $dir"
  fi
}

# new_temp_file VAR NAME: VAR = the path of a new empty file NAME (mode 0600) in the private directory.
new_temp_file() {
  work_dir
  local file="$WORK_DIR/$2"
  (umask 077 && : >"$file") || fail "cannot create $file"
  printf -v "$1" '%s' "$file"
}

# ---------------------------------------------------------------------------------------------------------------------
# Output and errors

# mask TEXT: TEXT with every registered secret, and anything shaped like a key or SAS field, replaced by ***.
mask() {
  local text=$1 secret
  for secret in "${SECRETS[@]}"; do
    text=${text//"$secret"/'***'}
  done
  # Belt and braces for secrets we were never told about (an az error echoing a URL or a connection string).
  printf '%s' "$text" | sed -E \
    -e 's/(^|[^[:alnum:]])((code|sig|SharedAccessKey|AccountKey|SharedAccessSignature)=)[^&;,"'"'"'[:space:]]+/\1\2***/g' \
    -e 's/("(primaryKey|secondaryKey|value)":[[:space:]]*")[^"]+"/\1***"/g' \
    -e 's/(--(symmetric-key|group-key|primary-key|secondary-key|connection-string|account-key|sas-token)[= ])[^[:space:]]+/\1***/g'
}

# add_secret VALUE...: from now on VALUE never appears in anything printed.
add_secret() {
  local value
  for value in "$@"; do
    if [[ -n $value && $value != '***' ]]; then SECRETS+=("$value"); fi
  done
}

say() { printf '%s\n' "$(mask "$*")"; }      # results, to stdout
note() { printf '%s\n' "$(mask "$*")" >&2; }  # progress, to stderr

usage_error() {
  printf '%s: %s\n' "$SCRIPT_NAME" "$(mask "$*")" >&2
  printf "Run '%s --help' for usage.\n" "$SCRIPT_NAME" >&2
  exit 2
}

fail() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$(mask "$*")" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------------------------------------
# Arguments

# VAR=$(opt_value "$@") inside a `case $1` branch: the value after the flag, or a usage error naming the flag.
opt_value() {
  if [[ $# -lt 2 || -z $2 || $2 == --* ]]; then usage_error "$1 needs a value"; fi
  printf '%s' "$2"
}

# require FLAG VALUE: a usage error naming FLAG when VALUE is empty.
require() {
  if [[ -z $2 ]]; then usage_error "missing $1"; fi
}

# check_match FLAG VALUE REGEX WHAT
check_match() {
  if ! [[ $2 =~ $3 ]]; then usage_error "$1 '$2' is not valid: $4"; fi
}

# DPS registration and enrollment group ids: up to 128 characters of letters, digits and - . _ :, ending in a letter,
# a digit or -. DPS compares them case-insensitively.
REGISTRATION_ID_RE='^[A-Za-z0-9._:-]{0,127}[A-Za-z0-9-]$'
check_registration_id() {
  check_match "$1" "$2" "$REGISTRATION_ID_RE" \
    'a DPS id is up to 128 characters of letters, digits and - . _ : and ends in a letter, a digit or -'
}

check_resource_group() { check_match "$1" "$2" '^[-A-Za-z0-9._()]{1,89}[-A-Za-z0-9_()]$' '1-90 letters, digits, - _ . ( ), not ending in .'; }
check_hub_name() { check_match "$1" "$2" '^[A-Za-z0-9][A-Za-z0-9-]{1,48}[A-Za-z0-9]$' '3-50 letters, digits and -'; }
check_dps_name() { check_match "$1" "$2" '^[A-Za-z0-9][A-Za-z0-9-]{1,62}[A-Za-z0-9]$' '3-64 letters, digits and -'; }
check_vault_name() { check_match "$1" "$2" '^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$' '3-24 letters, digits and -, starting with a letter'; }
check_storage_name() { check_match "$1" "$2" '^[a-z0-9]{3,24}$' '3-24 lower-case letters and digits'; }
check_app_name() { check_match "$1" "$2" '^[A-Za-z0-9][A-Za-z0-9-]{0,58}[A-Za-z0-9]$' '2-60 letters, digits and -'; }

# check_tag FLAG K=V: a Key Vault tag that can also be a device twin tag.
check_tag() {
  local flag=$1 pair=$2
  if [[ $pair != *=* ]]; then usage_error "$flag '$pair' must be key=value"; fi
  local key=${pair%%=*} value=${pair#*=}
  if ! [[ $key =~ ^[A-Za-z0-9_][A-Za-z0-9_:@+-]{0,127}$ ]]; then
    usage_error "$flag '$pair': the key must be 1-128 letters, digits and _ : @ + - (it becomes a twin tag: no . \$ or space)"
  fi
  if [[ $key == file-encoding ]]; then usage_error "$flag '$pair': file-encoding is set by az itself"; fi
  if [[ $key == public-key-sha256 ]]; then usage_error "$flag '$pair': public-key-sha256 is set by register-key.sh from the key itself"; fi
  if [[ ${#value} -gt 256 ]]; then usage_error "$flag '$pair': the value is over 256 characters"; fi
  if [[ $value == *[[:cntrl:]]* ]]; then usage_error "$flag '$pair': the value holds a control character"; fi
}

# ---------------------------------------------------------------------------------------------------------------------
# Running commands

# quote_cmd ARG...: the command as one line a shell would read back.
quote_cmd() {
  local out='' arg plain='^[A-Za-z0-9_./:=@,+%-]+$'
  for arg in "$@"; do
    if [[ $arg =~ $plain ]]; then
      out+=" $arg"
    elif [[ $arg == *\'* && $arg != *[\"\$\`\\!]* ]]; then
      out+=" \"$arg\""
    else
      out+=" '${arg//\'/\'\\\'\'}'"
    fi
  done
  printf '%s' "${out# }"
}

# is_not_found EXIT STDERR: az's answer for a resource that does not exist (ResourceNotFoundError exits 3).
is_not_found() {
  [[ $1 == 3 ]] || grep -qiE 'ResourceNotFound|NotFound|not found|could not be found|does not exist|is not installed' <<<"$2"
}

# hint_for ERROR_TEXT: one line of advice for errors people meet on the way.
hint_for() {
  case $1 in
    *"az login"*) printf 'hint: sign in first: az login (and az account set --subscription ...)\n' ;;
    *"deleted but recoverable"*) printf 'hint: a deleted secret of that name is in the vault'"'"'s recycle bin: az keyvault secret recover, or purge it (deprovision.sh --purge)\n' ;;
    *SecretDisabled*) printf 'hint: Key Vault refuses to read a disabled secret (403 SecretDisabled); az keyvault secret list-versions shows its attributes and tags\n' ;;
    *"Cannot find user or service principal in graph database"*) printf 'hint: a just-created identity takes a while to appear in Microsoft Graph; give its object id with --assignee-object-id and --assignee-principal-type\n' ;;
    *Forbidden* | *AuthorizationFailed* | *"not authorized"*) printf 'hint: the signed-in identity lacks a role for this; Key Vault secrets need "Key Vault Secrets Officer" on the vault (deploy.sh --operator)\n' ;;
  esac
}

# call [--into VAR] [--secret] [--placeholder TEXT] [--missing-ok] [--passthrough] [--cwd DIR] -- COMMAND ARG...
#   Prints the command (masked): to stdout under --dry-run, where nothing runs, else to stderr as a "+ " trace.
#   --into VAR       capture stdout (a read) into VAR; under --dry-run VAR gets TEXT (default <VAR>)
#   --secret         the captured value is a secret: masked from now on (registered before anything is printed)
#   --missing-ok     return 3, quietly, when the command answers "not found"
#   --passthrough    let the command's output through to stderr as it comes (npm, zip, func)
#   Any other failure prints the command's stderr (masked) and exits 1.
call() {
  local into='' secret=0 placeholder='' has_placeholder=0 missing_ok=0 passthrough=0 cwd=''
  while [[ $# -gt 0 && $1 != -- ]]; do
    case $1 in
      --into) into=$2; shift 2 ;;
      --secret) secret=1; shift ;;
      --placeholder) placeholder=$2; has_placeholder=1; shift 2 ;;
      --missing-ok) missing_ok=1; shift ;;
      --passthrough) passthrough=1; shift ;;
      --cwd) cwd=$2; shift 2 ;;
      *) fail "call: unknown option $1" ;;
    esac
  done
  shift
  local line
  line=$(quote_cmd "$@")
  if [[ -n $cwd ]]; then line="(cd $(quote_cmd "$cwd") && $line)"; fi

  if [[ $DRY_RUN == 1 ]]; then
    printf '%s\n' "$(mask "$line")" >&3
    if [[ -n $into ]]; then
      if [[ $has_placeholder == 0 ]]; then placeholder="<$into>"; fi
      printf -v "$into" '%s' "$placeholder"
      if [[ $secret == 1 ]]; then add_secret "${!into}"; fi
    fi
    return 0
  fi

  printf '+ %s\n' "$(mask "$line")" >&2
  local rc=0 outfile errfile stdout stderr
  new_temp_file outfile stdout
  new_temp_file errfile stderr
  # In the background, then wait: a signal interrupts wait at once, where a foreground child would delay the trap
  # until it ends.
  if [[ $passthrough == 1 ]]; then
    if [[ -n $cwd ]]; then (cd "$cwd" && exec "$@") >&2 & else "$@" >&2 & fi
  else
    if [[ -n $cwd ]]; then (cd "$cwd" && exec "$@") >"$outfile" 2>"$errfile" & else "$@" >"$outfile" 2>"$errfile" & fi
  fi
  CHILD_PID=$!
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=''
  if [[ $passthrough == 1 ]]; then
    rm -f -- "$outfile" "$errfile"
    if [[ $rc != 0 ]]; then fail "$1 failed (exit $rc): $line"; fi
    return 0
  fi
  stdout=$(<"$outfile")
  stderr=$(<"$errfile")
  rm -f -- "$outfile" "$errfile"
  stdout=${stdout//$'\r'/}
  # A secret is registered before anything else can print it.
  if [[ $rc == 0 && $secret == 1 ]]; then add_secret "$stdout"; fi
  if [[ $rc != 0 ]]; then
    if [[ $missing_ok == 1 ]] && is_not_found "$rc" "$stderr"; then return 3; fi
    if [[ -n $stderr ]]; then printf '%s\n' "$(mask "$stderr")" >&2; fi
    hint_for "$stderr" >&2
    fail "$1 failed (exit $rc): $line"
  fi
  if [[ -n $into ]]; then
    printf -v "$into" '%s' "$stdout"
  elif [[ -n $stdout ]]; then
    printf '%s\n' "$(mask "$stdout")" >&2
  fi
  if [[ -n $stderr ]]; then printf '%s\n' "$(mask "$stderr")" >&2; fi
  return 0
}

# az_exists VAR -- az ... show ...: 0 and VAR set when it exists, 1 when az says not found (or under --dry-run, which
# plans for an empty subscription), exit 1 on any other error.
az_exists() {
  local var=$1 rc=0
  shift 2
  if [[ $DRY_RUN == 1 ]]; then
    call -- "$@"
    return 1
  fi
  call --into "$var" --missing-ok -- "$@" || rc=$?
  if [[ $rc == 3 ]]; then return 1; fi
  return "$rc"
}

# az_delete WHAT -- az ... delete ...: a delete where "already gone" is success.
az_delete() {
  local what=$1 rc=0
  shift 2
  call --missing-ok -- "$@" || rc=$?
  if [[ $rc == 3 ]]; then
    note "$what: already gone"
  elif [[ $DRY_RUN != 1 ]]; then
    note "$what: deleted"
  fi
}

# ensure_extension NAME: enrollment and device-identity commands live in the azure-iot extension, app-insights in
# application-insights. Installed when missing (az would otherwise prompt, which a script cannot answer). A preview
# azure-iot (0.30.0b1, 1.0.0b2) overrides the DPS commands: warn (facts §2.4).
ensure_extension() {
  local version=''
  if ! az_exists version -- az extension show --name "$1" --query version -o tsv; then
    call -- az extension add --name "$1" --only-show-errors
  elif [[ $version == *[ab][0-9]* ]]; then
    note "warning: extension $1 $version is a preview; the scripts are tested against the stable release (az extension add --name $1 --version <stable> --upgrade)"
  fi
}
ensure_iot_extension() { ensure_extension azure-iot; }

# ---------------------------------------------------------------------------------------------------------------------
# Steps deploy.sh and deploy-portal.sh share

# grant SCOPE_ID SCOPE_NAME ASSIGNEE_ID PRINCIPAL_TYPE ROLE: ROLE on that one resource, unless already there. The
# check lists the scope's assignments and filters by principalId: `--assignee` would ask Microsoft Graph, which does
# not know a just-created identity yet (facts §2.3.6). The create names the principal by object id and type for
# the same reason.
grant() {
  local scope=$1 scope_name=$2 assignee=$3 type=$4 role=$5 count=''
  call --into count --placeholder 0 -- az role assignment list --scope "$scope" --role "$role" \
    --query "[?principalId=='$assignee'] | length(@)" -o tsv
  if [[ ${count:-0} != 0 ]]; then
    note "role \"$role\" on $scope_name for $assignee: exists"
    return 0
  fi
  local args=(az role assignment create --assignee-object-id "$assignee" --role "$role" --scope "$scope")
  if [[ -n $type ]]; then args+=(--assignee-principal-type "$type"); fi
  call -- "${args[@]}" -o none
}

# package_hash ZIP: sha256 over the member names and contents (a zip's own bytes change with every build's
# timestamps, so they cannot say "unchanged").
package_hash() {
  local zip=$1 sum
  sum=$( { unzip -Z1 "$zip" | LC_ALL=C sort; unzip -Z1 "$zip" | LC_ALL=C sort | while IFS= read -r member; do unzip -p "$zip" "$member"; done; } | openssl dgst -sha256 -r)
  printf '%s' "${sum%% *}"
}

# write_settings_file VAR NAME=VALUE...: VAR = a new 0600 file in the private directory holding the settings as one
# JSON object, for `az functionapp config appsettings set --settings @FILE`: az parses an item that is JSON as a
# dict of settings (appservice custom.py update_app_settings, shell_safe_json_parse), so a secret value never
# stands in any process's argv. Under --dry-run VAR is <settings.json> and nothing is written.
write_settings_file() {
  local var=$1 settings_path pair name value json='' sep=''
  shift
  if [[ $DRY_RUN == 1 ]]; then printf -v "$var" '%s' '<settings.json>'; return 0; fi
  new_temp_file settings_path "settings.$RANDOM.json"
  for pair in "$@"; do
    name=${pair%%=*} value=${pair#*=}
    if [[ $value == *[[:cntrl:]]* ]]; then fail "setting $name: the value holds a control character"; fi
    value=${value//\\/\\\\}
    value=${value//\"/\\\"}
    json+="$sep\"$name\":\"$value\""
    sep=','
  done
  printf '{%s}\n' "$json" >"$settings_path"
  printf -v "$var" '%s' "$settings_path"
}

# ---------------------------------------------------------------------------------------------------------------------
# Key Vault secrets as the scripts read them: never by value. A disabled secret answers 403 SecretDisabled to a read
# (facts §3, K1), so its state comes from list-versions, which returns attributes and tags of every version (K4);
# the current version is the newest.

DIGEST_TAG=public-key-sha256

# secret_state VAULT NAME: sets SECRET_FOUND (0|1), SECRET_ENABLED (true|false), SECRET_DIGEST (the
# public-key-sha256 tag, or empty), SECRET_TAG_KEYS and SECRET_TAG_VALUES (arrays, in the stored order).
# shellcheck disable=SC2034 # the SECRET_* variables are the callers'
secret_state() {
  local rows='' rc=0
  SECRET_FOUND=0 SECRET_ENABLED='' SECRET_DIGEST='' SECRET_TAG_KEYS=() SECRET_TAG_VALUES=()
  # shellcheck disable=SC2016 # JMESPath literals, not shell expansions
  call --into rows --placeholder '' --missing-ok -- az keyvault secret list-versions --vault-name "$1" --name "$2" \
    --query 'max_by(@, &attributes.created).[[attributes.enabled], keys(tags || `{}`), values(tags || `{}`)]' -o tsv || rc=$?
  if [[ $rc == 3 || -z $rows ]]; then return 0; fi
  local enabled_row='' keys_row='' values_row='' i
  { IFS= read -r enabled_row || true; IFS= read -r keys_row || true; IFS= read -r values_row || true; } <<<"$rows"
  SECRET_FOUND=1
  SECRET_ENABLED=${enabled_row,,}
  if [[ -n $keys_row ]]; then
    split_tabs SECRET_TAG_KEYS "$keys_row"
    split_tabs SECRET_TAG_VALUES "$values_row"
  fi
  for i in "${!SECRET_TAG_KEYS[@]}"; do
    if [[ ${SECRET_TAG_KEYS[$i]} == "$DIGEST_TAG" ]]; then SECRET_DIGEST=${SECRET_TAG_VALUES[$i]:-}; fi
  done
}

# split_tabs ARRAY TEXT: TEXT split at every tab, empty fields kept (read -a would merge adjacent tabs).
split_tabs() {
  local -n into=$1
  local rest=$2
  into=()
  while [[ $rest == *$'\t'* ]]; do
    into+=("${rest%%$'\t'*}")
    rest=${rest#*$'\t'}
  done
  into+=("$rest")
}

# secret_deleted VAULT NAME: 0 when NAME is in the vault's deleted (recoverable) secrets. list-deleted, because
# show-deleted of a secret deleted while disabled is refused like a read (K2).
secret_deleted() {
  local count=''
  call --into count --placeholder 0 -- az keyvault secret list-deleted --vault-name "$1" --query "[?name=='$2'] | length(@)" -o tsv
  [[ ${count:-0} != 0 ]]
}

# public_key_digest FILE: CONTRACTS item 1: lowercase hex SHA-256 over the DER SubjectPublicKeyInfo bytes of each
# PUBLIC KEY block, concatenated in file order (a PEM body is the base64 of exactly those bytes).
public_key_digest() {
  local line in_block=0 body='' sum
  local -a bodies=()
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    if [[ $line == '-----BEGIN PUBLIC KEY-----' ]]; then in_block=1; body=''; continue; fi
    if [[ $line == '-----END PUBLIC KEY-----' ]]; then in_block=0; bodies+=("$body"); continue; fi
    if [[ $in_block == 1 ]]; then body+=${line//[[:space:]]/}; fi
  done <"$1"
  sum=$(for body in "${bodies[@]}"; do printf '%s' "$body" | openssl base64 -d -A; done | openssl dgst -sha256 -r)
  printf '%s' "${sum%% *}"
}

# ---------------------------------------------------------------------------------------------------------------------
# The webhook's Key Vault secret names (must match functions/keys/names.ts exactly)

sha256_hex() {
  local sum
  if command -v sha256sum >/dev/null 2>&1; then
    sum=$(printf '%s' "$1" | sha256sum)
  elif command -v shasum >/dev/null 2>&1; then
    sum=$(printf '%s' "$1" | shasum -a 256)
  else
    sum=$(printf '%s' "$1" | openssl dgst -sha256 -r)
  fi
  printf '%s' "${sum%% *}"
}

# Ids are lower-cased first (DPS ids are case-insensitive, and so are vault names). An id of [a-z0-9-]{1,119} maps
# to PREFIX-<id>; any other (dots, colons, underscores, longer) to HASHPREFIX-<sha256 hex of the lower-cased id>.
id_secret_name() {
  local lower
  lower=$(LC_ALL=C; printf '%s' "${3,,}")
  if [[ $lower =~ ^[a-z0-9-]{1,119}$ ]]; then
    printf '%s-%s' "$1" "$lower"
  else
    printf '%s-%s' "$2" "$(sha256_hex "$lower")"
  fi
}
device_secret_name() { id_secret_name device devicehash "$1"; }
group_secret_name() { id_secret_name group grouphash "$1"; }

# select_key_secret REGISTRATION_ID GROUP_ID: exactly one given, checked; sets SECRET_NAME (the webhook's secret name
# for that device or group) and WHO (how messages name it).
# shellcheck disable=SC2034 # SECRET_NAME and WHO are the callers'
select_key_secret() {
  local registration_id=$1 group_id=$2
  if [[ -n $registration_id && -n $group_id ]]; then usage_error "give --registration-id or --group-id, not both"; fi
  if [[ -z $registration_id && -z $group_id ]]; then usage_error "missing --registration-id (or --group-id)"; fi
  if [[ -n $registration_id ]]; then
    check_registration_id --registration-id "$registration_id"
    SECRET_NAME=$(device_secret_name "$registration_id")
    WHO="device $registration_id"
  else
    check_registration_id --group-id "$group_id"
    SECRET_NAME=$(group_secret_name "$group_id")
    WHO="group $group_id"
  fi
}

# ---------------------------------------------------------------------------------------------------------------------
# Misc

hub_host() { # NAME or NAME.azure-devices.net -> host name
  if [[ $1 == *.* ]]; then printf '%s' "${1,,}"; else printf '%s.azure-devices.net' "${1,,}"; fi
}
hub_name() { printf '%s' "${1%%.*}"; }

# Created up front, so that a call made inside $(...) (a subshell, which runs no EXIT trap) still writes into the
# directory the main shell removes.
work_dir
