#!/usr/bin/env bash
# deploy.sh: from an empty subscription to a running validatejwt webhook: resource group, IoT hub(s), DPS with the
# hubs linked, Key Vault (RBAC), storage, a Node 20 Linux consumption function app whose system-assigned identity may
# read the vault's secrets (and nothing else), its app settings, and the code.
# Idempotent: every resource is looked up (az ... show) before it is created; settings are written only when they
# differ; the code is published only when its content hash differs from the one recorded on the app (a tag).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HASH_TAG=dpsJwtWebhookCodeSha256
READER_ROLE='Key Vault Secrets User'
OPERATOR_ROLE='Key Vault Secrets Officer'

usage() {
  cat <<'EOF'
Usage: deploy.sh --location LOC --prefix PREFIX [options] [--dry-run]

Creates what is missing (each resource is looked up first; a second run changes nothing):
  az group create                        resource group            (default PREFIX-rg)
  az iot hub create --sku S1             IoT hub(s)                (default PREFIX-hub-1 ... PREFIX-hub-N)
  az iot dps create --sku S1             the DPS                   (default PREFIX-dps)
  az iot dps linked-hub create           every hub linked to the DPS
  az keyvault create --enable-rbac-authorization true              (default PREFIX-kv)
  az storage account create              the function app's storage (default PREFIX without - plus "st")
  az functionapp create --consumption-plan-location LOC --os-type Linux --functions-version 4
                        --runtime node --runtime-version 20       (default PREFIX-fn)
  az functionapp identity assign         a system-assigned identity, granted "Key Vault Secrets User"
                                         on the vault only
  az functionapp config appsettings set  KEY_VAULT_URL, DPS_ID_SCOPE, and the optional ones (only when changed)
  npm ci && npm run build, then az functionapp deployment source config-zip (or func azure functionapp publish)
                                         (only when the built package differs from the last one published)

Options:
  --location LOC           Azure region, e.g. westeurope (required)
  --prefix PREFIX          3-18 of a-z 0-9 -, starting with a letter; names every resource below by default.
                           Storage, vault and app names are global: pick a prefix unlikely to be taken.
  -g, --resource-group RG  resource group name
  --hubs N|NAME[,NAME...]  how many IoT hubs (PREFIX-hub-1..N) or their names (default 1)
  --hub-sku SKU            IoT hub SKU (default S1; F1 is free, one per subscription)
  --dps NAME               DPS name
  --vault NAME             Key Vault name (3-24)
  --storage NAME           storage account name (3-24 lower-case letters and digits)
  --app NAME               function app name
  --operator ID|me|none    who may write device keys (register-key.sh, activate.sh, deprovision.sh): granted
                           "Key Vault Secrets Officer" on the vault. me = the signed-in user (default),
                           ID = a user/group/service principal object id, none = grant nothing
  --jwt-max-lifetime SECS  app setting JWT_MAX_LIFETIME_SECONDS
  --twin-template JSON|@FILE  app setting INITIAL_TWIN_TEMPLATE ({"tags":{...},"properties":{"desired":{...}}})
  --setting NAME=VALUE     any other app setting (repeatable), e.g. IOT_HUB_HOSTNAME=..., REPLAY_STORE=table
  --publish auto|zip|func|skip
                           how to publish the code (default auto: func when on PATH, else zip deploy)
  --force-publish          publish even when the package is unchanged
  --project-dir DIR        the project to build (default: this repository)
  --dry-run                print the commands, run none (plans for an empty subscription; values read from Azure
                           appear as <placeholders>)
  -h, --help               this text

At the end it prints export lines (DPSJWT_RESOURCE_GROUP, DPSJWT_DPS, DPSJWT_VAULT, DPSJWT_APP) that the other
scripts take as defaults.
EOF
}

LOCATION=''
PREFIX=''
RG=''
HUBS_ARG=1
HUB_SKU=S1
DPS=''
VAULT=''
STORAGE=''
APP=''
OPERATOR=me
JWT_MAX_LIFETIME=''
TWIN_TEMPLATE=''
EXTRA_SETTINGS=()
PUBLISH=auto
FORCE_PUBLISH=0
PROJECT_DIR=$REPO_ROOT
while [[ $# -gt 0 ]]; do
  case $1 in
    --location | -l) LOCATION=$(opt_value "$@"); shift 2 ;;
    --prefix) PREFIX=$(opt_value "$@"); shift 2 ;;
    -g | --resource-group) RG=$(opt_value "$@"); shift 2 ;;
    --hubs) HUBS_ARG=$(opt_value "$@"); shift 2 ;;
    --hub-sku) HUB_SKU=$(opt_value "$@"); shift 2 ;;
    --dps) DPS=$(opt_value "$@"); shift 2 ;;
    --vault) VAULT=$(opt_value "$@"); shift 2 ;;
    --storage) STORAGE=$(opt_value "$@"); shift 2 ;;
    --app) APP=$(opt_value "$@"); shift 2 ;;
    --operator) OPERATOR=$(opt_value "$@"); shift 2 ;;
    --jwt-max-lifetime) JWT_MAX_LIFETIME=$(opt_value "$@"); shift 2 ;;
    --twin-template) TWIN_TEMPLATE=$(opt_value "$@"); shift 2 ;;
    --setting) EXTRA_SETTINGS+=("$(opt_value "$@")"); shift 2 ;;
    --publish) PUBLISH=$(opt_value "$@"); shift 2 ;;
    --force-publish) FORCE_PUBLISH=1; shift ;;
    --project-dir) PROJECT_DIR=$(opt_value "$@"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done

# ---------------------------------------------------------------------------------------------------------------------
# Arguments

require --location "$LOCATION"
check_match --location "$LOCATION" '^[a-z][a-z0-9]{2,39}$' 'an Azure region name such as westeurope (az account list-locations)'
if [[ -n $PREFIX ]]; then
  check_match --prefix "$PREFIX" '^[a-z][a-z0-9-]{1,16}[a-z0-9]$' '3-18 of a-z 0-9 -, starting with a letter'
  RG=${RG:-$PREFIX-rg}
  DPS=${DPS:-$PREFIX-dps}
  VAULT=${VAULT:-$PREFIX-kv}
  APP=${APP:-$PREFIX-fn}
  if [[ -z $STORAGE ]]; then STORAGE=${PREFIX//-/}st; STORAGE=${STORAGE:0:24}; fi
fi
for pair in "--resource-group:$RG" "--dps:$DPS" "--vault:$VAULT" "--storage:$STORAGE" "--app:$APP"; do
  if [[ -z ${pair#*:} ]]; then usage_error "missing ${pair%%:*} (or --prefix)"; fi
done
check_resource_group --resource-group "$RG"
check_dps_name --dps "$DPS"
check_vault_name --vault "$VAULT"
check_storage_name --storage "$STORAGE"
check_app_name --app "$APP"

HUBS=()
if [[ $HUBS_ARG =~ ^[0-9]+$ ]]; then
  if ((HUBS_ARG < 1 || HUBS_ARG > 10)); then usage_error "--hubs $HUBS_ARG: between 1 and 10 hubs"; fi
  if [[ -z $PREFIX ]]; then usage_error "--hubs $HUBS_ARG needs --prefix to name the hubs (or give --hubs NAME,NAME)"; fi
  for ((i = 1; i <= HUBS_ARG; i++)); do HUBS+=("$PREFIX-hub-$i"); done
else
  IFS=',' read -r -a HUBS <<<"$HUBS_ARG"
fi
for hub in "${HUBS[@]}"; do check_hub_name --hubs "$hub"; done
check_match --hub-sku "$HUB_SKU" '^(F1|B1|B2|B3|S1|S2|S3)$' 'one of F1 B1 B2 B3 S1 S2 S3'

case $OPERATOR in
  me | none) ;;
  *) check_match --operator "$OPERATOR" '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' 'me, none, or an object id (GUID)' ;;
esac
case $PUBLISH in
  auto) if command -v func >/dev/null 2>&1; then PUBLISH=func; else PUBLISH=zip; fi ;;
  zip | func | skip) ;;
  *) usage_error "--publish must be auto, zip, func or skip, got '$PUBLISH'" ;;
esac
if [[ $PUBLISH == func ]] && ! command -v func >/dev/null 2>&1; then usage_error "--publish func: func (Azure Functions Core Tools) is not on PATH"; fi

SETTINGS=()
if [[ -n $JWT_MAX_LIFETIME ]]; then
  check_match --jwt-max-lifetime "$JWT_MAX_LIFETIME" '^[1-9][0-9]{0,7}$' 'a whole number of seconds'
  SETTINGS+=("JWT_MAX_LIFETIME_SECONDS=$JWT_MAX_LIFETIME")
fi
if [[ -n $TWIN_TEMPLATE ]]; then
  if [[ $TWIN_TEMPLATE == @* ]]; then
    file=${TWIN_TEMPLATE#@}
    if [[ ! -f $file ]]; then usage_error "--twin-template $TWIN_TEMPLATE: no such file: $file"; fi
    TWIN_TEMPLATE=$(<"$file")
  fi
  # One line: JSON whitespace may go, and an app setting is easier to compare that way.
  TWIN_TEMPLATE=$(tr '\r\n\t' '   ' <<<"$TWIN_TEMPLATE" | sed -e 's/^ *//' -e 's/ *$//')
  if [[ $TWIN_TEMPLATE != '{'*'}' ]]; then usage_error "--twin-template must be a JSON object"; fi
  if command -v node >/dev/null 2>&1 && ! node -e 'JSON.parse(process.argv[1])' "$TWIN_TEMPLATE" 2>/dev/null; then
    usage_error "--twin-template is not valid JSON"
  fi
  SETTINGS+=("INITIAL_TWIN_TEMPLATE=$TWIN_TEMPLATE")
fi
for setting in "${EXTRA_SETTINGS[@]}"; do
  check_match --setting "${setting%%=*}" '^[A-Za-z_][A-Za-z0-9_]*$' 'NAME=VALUE with a NAME of letters, digits and _'
  if [[ $setting != *=* ]]; then usage_error "--setting '$setting' must be NAME=VALUE"; fi
  case ${setting%%=*} in
    KEY_VAULT_URL | DPS_ID_SCOPE | AzureWebJobsStorage | FUNCTIONS_* | WEBSITE_*)
      usage_error "--setting ${setting%%=*} is managed by deploy.sh or the platform" ;;
  esac
  SETTINGS+=("$setting")
done
if [[ $PUBLISH != skip ]]; then
  if [[ ! -f $PROJECT_DIR/package.json ]]; then usage_error "--project-dir $PROJECT_DIR has no package.json"; fi
  if [[ ! -f $PROJECT_DIR/host.json ]]; then usage_error "--project-dir $PROJECT_DIR has no host.json (the Functions host needs it)"; fi
  if [[ ! -f $PROJECT_DIR/package-lock.json ]]; then usage_error "--project-dir $PROJECT_DIR has no package-lock.json (npm ci needs it)"; fi
fi

if [[ $DRY_RUN == 1 ]]; then
  note "# dry run: nothing runs; the plan assumes an empty subscription and shows values read from Azure as <placeholders>"
fi

# ---------------------------------------------------------------------------------------------------------------------
# Resources

SUBSCRIPTION=''
call --into SUBSCRIPTION --placeholder '<subscription-id>' -- az account show --query id -o tsv
note "subscription $SUBSCRIPTION, resource group $RG in $LOCATION"

# shellcheck disable=SC2034 # set by az_exists through its name
found=''
if az_exists found -- az group show -n "$RG" --query id -o tsv; then
  note "resource group $RG: exists"
else
  call -- az group create -n "$RG" -l "$LOCATION" -o none
fi

HUB_HOSTS=()
for hub in "${HUBS[@]}"; do
  if az_exists found -- az iot hub show -n "$hub" -g "$RG" --query properties.hostName -o tsv; then
    note "IoT hub $hub: exists"
  else
    call -- az iot hub create -n "$hub" -g "$RG" -l "$LOCATION" --sku "$HUB_SKU" --unit 1 -o none
  fi
  HUB_HOSTS+=("$(hub_host "$hub")")
done

ID_SCOPE=''
if az_exists ID_SCOPE -- az iot dps show -n "$DPS" -g "$RG" --query properties.idScope -o tsv; then
  note "DPS $DPS: exists"
else
  call -- az iot dps create -n "$DPS" -g "$RG" -l "$LOCATION" --sku S1 -o none
  call --into ID_SCOPE --placeholder '<id-scope>' -- az iot dps show -n "$DPS" -g "$RG" --query properties.idScope -o tsv
fi

linked=''
call --into linked --placeholder '' -- az iot dps linked-hub list --dps-name "$DPS" -g "$RG" --query '[].name' -o tsv
for i in "${!HUBS[@]}"; do
  if grep -qixF -- "${HUB_HOSTS[$i]}" <<<"$linked"; then
    note "IoT hub ${HUBS[$i]}: linked to $DPS"
  else
    call -- az iot dps linked-hub create --dps-name "$DPS" -g "$RG" --hub-name "${HUBS[$i]}" --hub-resource-group "$RG" -o none
  fi
done

VAULT_ID=''
if az_exists VAULT_ID -- az keyvault show -n "$VAULT" -g "$RG" --query id -o tsv; then
  note "Key Vault $VAULT: exists"
else
  call -- az keyvault create -n "$VAULT" -g "$RG" -l "$LOCATION" --enable-rbac-authorization true -o none
  call --into VAULT_ID --placeholder '<vault-id>' -- az keyvault show -n "$VAULT" -g "$RG" --query id -o tsv
fi
VAULT_URI=''
call --into VAULT_URI --placeholder "https://$VAULT.vault.azure.net/" -- az keyvault show -n "$VAULT" -g "$RG" --query properties.vaultUri -o tsv
VAULT_URI=${VAULT_URI%/}

# grant ASSIGNEE_ID PRINCIPAL_TYPE ROLE: a role on the vault only, unless it is already there.
grant() {
  local count=''
  call --into count --placeholder 0 -- az role assignment list --assignee "$1" --role "$3" --scope "$VAULT_ID" --query 'length(@)' -o tsv
  if [[ ${count:-0} != 0 ]]; then
    note "role \"$3\" on $VAULT for $1: exists"
    return 0
  fi
  local args=(az role assignment create --assignee-object-id "$1" --role "$3" --scope "$VAULT_ID")
  if [[ -n $2 ]]; then args+=(--assignee-principal-type "$2"); fi
  call -- "${args[@]}" -o none
}

if [[ $OPERATOR != none ]]; then
  operator_id=$OPERATOR
  operator_type=''
  if [[ $OPERATOR == me ]]; then
    call --into operator_id --placeholder '<signed-in-user-id>' -- az ad signed-in-user show --query id -o tsv
    operator_type=User
  fi
  grant "$operator_id" "$operator_type" "$OPERATOR_ROLE"
fi

if az_exists found -- az storage account show -n "$STORAGE" -g "$RG" --query id -o tsv; then
  note "storage account $STORAGE: exists"
else
  call -- az storage account create -n "$STORAGE" -g "$RG" -l "$LOCATION" --sku Standard_LRS --kind StorageV2 \
    --min-tls-version TLS1_2 --allow-blob-public-access false -o none
fi

APP_ID=''
if az_exists APP_ID -- az functionapp show -g "$RG" -n "$APP" --query id -o tsv; then
  note "function app $APP: exists"
else
  call -- az functionapp create -g "$RG" -n "$APP" --storage-account "$STORAGE" --consumption-plan-location "$LOCATION" \
    --os-type Linux --functions-version 4 --runtime node --runtime-version 20 -o none
  call --into APP_ID --placeholder '<function-app-id>' -- az functionapp show -g "$RG" -n "$APP" --query id -o tsv
fi

PRINCIPAL_ID=''
call --into PRINCIPAL_ID --placeholder '' -- az functionapp identity show -g "$RG" -n "$APP" --query principalId -o tsv
if [[ -z $PRINCIPAL_ID ]]; then
  call --into PRINCIPAL_ID --placeholder '<principal-id>' -- az functionapp identity assign -g "$RG" -n "$APP" --query principalId -o tsv
else
  note "function app $APP: system-assigned identity exists"
fi
grant "$PRINCIPAL_ID" ServicePrincipal "$READER_ROLE"

# ---------------------------------------------------------------------------------------------------------------------
# App settings: written only when they differ (a write restarts the app).

SETTINGS=("KEY_VAULT_URL=$VAULT_URI" "DPS_ID_SCOPE=$ID_SCOPE" "${SETTINGS[@]}")
query=''
for setting in "${SETTINGS[@]}"; do query+="${query:+ || }name=='${setting%%=*}'"; done
current=''
call --into current --placeholder '' -- az functionapp config appsettings list -g "$RG" -n "$APP" --query "[?$query].[name, value]" -o tsv
declare -A have=()
while IFS=$'\t' read -r name value; do
  if [[ -n $name ]]; then have[$name]=$value; fi
done <<<"$current"
changed=()
for setting in "${SETTINGS[@]}"; do
  name=${setting%%=*}
  if [[ -z ${have[$name]+set} || ${have[$name]} != "${setting#*=}" ]]; then changed+=("$setting"); fi
done
if [[ ${#changed[@]} -gt 0 ]]; then
  call -- az functionapp config appsettings set -g "$RG" -n "$APP" --settings "${changed[@]}" -o none
else
  note "app settings: up to date"
fi

# ---------------------------------------------------------------------------------------------------------------------
# The code: build, stage only what the host needs, publish when the package changed.

sha256_tree() { # the content hash of a directory: file names and contents, in a stable order
  local sum_cmd=(sha256sum)
  if ! command -v sha256sum >/dev/null 2>&1; then sum_cmd=(shasum -a 256); fi
  (cd "$1" && find . -type f ! -name .package-lock.json -print0 | LC_ALL=C sort -z | xargs -0 "${sum_cmd[@]}" | "${sum_cmd[@]}") |
    cut -d' ' -f1
}

if [[ $PUBLISH != skip ]]; then
  call --passthrough --cwd "$PROJECT_DIR" -- npm ci --no-fund --no-audit
  call --passthrough --cwd "$PROJECT_DIR" -- npm run build
  if [[ $DRY_RUN == 1 ]]; then
    work='<work-dir>'
  else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    if [[ ! -f $PROJECT_DIR/dist/functions/validatejwt.js ]]; then
      fail "the build did not produce dist/functions/validatejwt.js (package.json main) in $PROJECT_DIR"
    fi
  fi
  stage=$work/package
  call -- mkdir -p "$stage/dist"
  call -- cp -R "$PROJECT_DIR/dist/functions" "$stage/dist/functions"
  call -- cp "$PROJECT_DIR/host.json" "$PROJECT_DIR/package.json" "$PROJECT_DIR/package-lock.json" "$stage/"
  call --passthrough --cwd "$stage" -- npm ci --omit=dev --ignore-scripts --no-fund --no-audit

  package_hash='<package-sha256>'
  if [[ $DRY_RUN != 1 ]]; then package_hash=$(sha256_tree "$stage"); fi
  published_hash=''
  call --into published_hash --placeholder '' -- az functionapp show -g "$RG" -n "$APP" --query "tags.$HASH_TAG" -o tsv
  if [[ $published_hash == "$package_hash" && $FORCE_PUBLISH != 1 ]]; then
    note "code: unchanged since the last publish (sha256 $package_hash); not published (--force-publish to publish anyway)"
  else
    if [[ $PUBLISH == func ]]; then
      # func reads the worker runtime from local.settings.json; it is not uploaded.
      if [[ $DRY_RUN != 1 ]]; then
        printf '{"IsEncrypted":false,"Values":{"FUNCTIONS_WORKER_RUNTIME":"node"}}\n' >"$stage/local.settings.json"
      fi
      call --passthrough --cwd "$stage" -- func azure functionapp publish "$APP" --no-build
    else
      call --passthrough --cwd "$stage" -- zip -q -r "$work/package.zip" .
      call -- az functionapp deployment source config-zip -g "$RG" -n "$APP" --src "$work/package.zip" -o none
    fi
    call -- az resource tag --ids "$APP_ID" --tags "$HASH_TAG=$package_hash" --is-incremental -o none
  fi
fi

if [[ $DRY_RUN == 1 ]]; then exit 0; fi
say ""
say "Deployed to $RG ($LOCATION):"
say "  IoT hubs:     ${HUB_HOSTS[*]}"
say "  DPS:          $DPS (id scope $ID_SCOPE)"
say "  Key Vault:    $VAULT_URI (RBAC; the app's identity has \"$READER_ROLE\")"
say "  Function app: $APP (https://$APP.azurewebsites.net/api/validatejwt)"
say "Role assignments can take a few minutes to apply. For the other scripts:"
say "  export DPSJWT_RESOURCE_GROUP=$RG DPSJWT_DPS=$DPS DPSJWT_VAULT=$VAULT DPSJWT_APP=$APP"
