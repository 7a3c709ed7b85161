#!/usr/bin/env bash
# deploy.sh: from an empty subscription to a running validatejwt webhook on the Flex Consumption plan: resource
# group, IoT hub(s), DPS with the hubs linked, Key Vault (RBAC), storage, Log Analytics + Application Insights in the
# same group, and a Flex Consumption function app (Node 24 or 22) whose system-assigned identity reaches the vault,
# its storage and its telemetry without any key; its app settings; and the code (one deploy of dist/app.zip).
# Idempotent: every resource is looked up before it is created; settings are written only when they differ; the code
# is published only when the package's content hash differs from the one recorded on the app (a tag).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HASH_TAG=dpsJwtWebhookCodeSha256
READER_ROLE='Key Vault Secrets User'
OPERATOR_ROLE='Key Vault Secrets Officer'
HOST_STORAGE_ROLE='Storage Blob Data Owner'
TABLE_ROLE='Storage Table Data Contributor'
METRICS_ROLE='Monitoring Metrics Publisher'

usage() {
  cat <<'EOF'
Usage: deploy.sh --location LOC --prefix PREFIX [options] [--dry-run]

Creates what is missing (each resource is looked up first; a second run changes nothing):
  az group create                        resource group            (default PREFIX-rg)
  az iot hub create --sku S1             IoT hub(s)                (default PREFIX-hub-1 ... PREFIX-hub-N)
  az iot dps create --sku S1             the DPS                   (default PREFIX-dps)
  az iot dps linked-hub create           every hub linked to the DPS
  az keyvault create --enable-rbac-authorization true              (default PREFIX-kv)
  az storage account create              the app's storage: host, deployment package, replay table
                                         (default PREFIX without - plus "st")
  az monitor log-analytics workspace create, az monitor app-insights component create
                                         telemetry in the same group (default PREFIX-logs, PREFIX-ai)
  az monitor app-insights workbook create
                                         the operations workbook (scripts/monitoring/workbook.json) on the
                                         component, when it changed (docs/operations.md)
  az functionapp create --flexconsumption-location LOC --runtime node --runtime-version 24|22
                        --instance-memory 2048 --deployment-storage-auth-type SystemAssignedIdentity
                        --app-insights PREFIX-ai --assign-identity [system]   (default PREFIX-fn)
  az role assignment create              for the app's identity: "Key Vault Secrets User" on the vault,
                                         "Storage Blob Data Owner" (host storage) and "Storage Table Data
                                         Contributor" (replay table) on its storage account,
                                         "Monitoring Metrics Publisher" on the Application Insights component
  az functionapp config appsettings set  KEY_VAULT_URL, DPS_ID_SCOPE, REPLAY_STORE=table,
                                         REPLAY_TABLE_ACCOUNT_URL, AzureWebJobsStorage__accountName,
                                         APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD,
                                         NODE_OPTIONS (the line in scripts/node-options), and the
                                         optional ones (only when changed); then the connection string
                                         AzureWebJobsStorage is deleted (identity only)
  npm run package, then az functionapp deployment source config-zip --src dist/app.zip
                                         (only when the package differs from the last one published)
  with --portal, then scripts/deploy-portal.sh for the activation portal's own function app (its identity with
                                         "Key Vault Secrets Officer" on the vault, an Entra app registration with
                                         the app role Device.Activate, App Service Authentication; see
                                         docs/portal.md), with the same resource group, location and vault

Options:
  --location LOC           Azure region with Flex Consumption, e.g. westeurope (required;
                           az functionapp list-flexconsumption-locations)
  --prefix PREFIX          3-18 of a-z 0-9 -, starting with a letter; names every resource below by default.
                           Storage, vault and app names are global: pick a prefix unlikely to be taken.
  -g, --resource-group RG  resource group name
  --hubs N|NAME[,NAME...]  how many IoT hubs (PREFIX-hub-1..N) or their names (default 1)
  --hub-sku SKU            IoT hub SKU (default S1; F1 is free, one per subscription)
  --dps NAME               DPS name
  --vault NAME             Key Vault name (3-24)
  --storage NAME           storage account name (3-24 lower-case letters and digits)
  --app NAME               function app name
  --workspace NAME         Log Analytics workspace name (default PREFIX-logs)
  --app-insights NAME      Application Insights component name (default PREFIX-ai)
  --node-version 24|22     Node.js on the app (default: the newest of 24 and 22 that
                           az functionapp list-flexconsumption-runtimes offers in LOC; 22 under --dry-run)
  --instance-memory MB     2048 (default) or 4096
  --no-replay              leave the replay store off. Then a token can be presented again within its lifetime
                           (JWT_MAX_LIFETIME_SECONDS): nothing remembers the tokens already used, and a Flex app
                           runs on many instances, so a memory store would not stop it either.
  --operator ID|me|none    who may write device keys (register-key.sh, activate.sh, deprovision.sh): granted
                           "Key Vault Secrets Officer" on the vault. me = the signed-in user (default),
                           ID = a user/group/service principal object id, none = grant nothing
  --jwt-max-lifetime SECS  app setting JWT_MAX_LIFETIME_SECONDS
  --twin-template JSON|@FILE  app setting INITIAL_TWIN_TEMPLATE ({"tags":{...},"properties":{"desired":{...}}})
  --setting NAME=VALUE     any other webhook setting (repeatable), e.g. IOT_HUB_HOSTNAME=...
                           NODE_OPTIONS defaults to the line in scripts/node-options (it bounds V8's young
                           generation; docs/deploy.md); --setting NODE_OPTIONS=... replaces it
  --publish-with zip|func  zip (default): az functionapp deployment source config-zip --src dist/app.zip;
                           func: func azure functionapp publish from the unpacked dist/app.zip
  --no-publish             create and configure, publish nothing
  --force-publish          publish even when the package is unchanged
  --portal                 also deploy the activation portal (scripts/deploy-portal.sh). Creating its Entra app
                           registration needs Entra rights (Application Developer or "users can register
                           applications"); without them, have an admin create it and pass --portal-client-id
  --portal-app NAME        the portal's function app (default PREFIX-portal, or APP-portal)
  --portal-storage NAME    its storage account (default PREFIX without - plus "pst", or STORAGE's first 21 + "pst")
  --portal-client-id ID    an existing app registration for the portal's sign-in
  --portal-fields FILE     the activation form's fields (default portal/fields.example.json)
  --project-dir DIR        the project to package (default: this repository; needs npm ci done)
  --dry-run                print every step, run none (plans for an empty subscription; values read from Azure
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
WORKSPACE=''
AI=''
NODE_VERSION=''
INSTANCE_MEMORY=2048
REPLAY=1
OPERATOR=me
JWT_MAX_LIFETIME=''
TWIN_TEMPLATE=''
EXTRA_SETTINGS=()
PUBLISH=zip
FORCE_PUBLISH=0
PROJECT_DIR=$REPO_ROOT
PORTAL=0
PORTAL_ARGS=()
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
    --workspace) WORKSPACE=$(opt_value "$@"); shift 2 ;;
    --app-insights) AI=$(opt_value "$@"); shift 2 ;;
    --node-version) NODE_VERSION=$(opt_value "$@"); shift 2 ;;
    --instance-memory) INSTANCE_MEMORY=$(opt_value "$@"); shift 2 ;;
    --no-replay) REPLAY=0; shift ;;
    --operator) OPERATOR=$(opt_value "$@"); shift 2 ;;
    --jwt-max-lifetime) JWT_MAX_LIFETIME=$(opt_value "$@"); shift 2 ;;
    --twin-template) TWIN_TEMPLATE=$(opt_value "$@"); shift 2 ;;
    --setting) EXTRA_SETTINGS+=("$(opt_value "$@")"); shift 2 ;;
    --publish-with) PUBLISH=$(opt_value "$@"); shift 2 ;;
    --no-publish) PUBLISH=none; shift ;;
    --force-publish) FORCE_PUBLISH=1; shift ;;
    --project-dir) PROJECT_DIR=$(opt_value "$@"); shift 2 ;;
    --portal) PORTAL=1; shift ;;
    --portal-app) PORTAL_ARGS+=(--app "$(opt_value "$@")"); shift 2 ;;
    --portal-storage) PORTAL_ARGS+=(--storage "$(opt_value "$@")"); shift 2 ;;
    --portal-client-id) PORTAL_ARGS+=(--client-id "$(opt_value "$@")"); shift 2 ;;
    --portal-fields) PORTAL_ARGS+=(--fields-file "$(opt_value "$@")"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done

# ---------------------------------------------------------------------------------------------------------------------
# Arguments

require --location "$LOCATION"
check_match --location "$LOCATION" '^[a-z][a-z0-9]{2,39}$' 'an Azure region name such as westeurope (az functionapp list-flexconsumption-locations)'
if [[ -n $PREFIX ]]; then
  check_match --prefix "$PREFIX" '^[a-z][a-z0-9-]{1,16}[a-z0-9]$' '3-18 of a-z 0-9 -, starting with a letter'
  RG=${RG:-$PREFIX-rg}
  DPS=${DPS:-$PREFIX-dps}
  VAULT=${VAULT:-$PREFIX-kv}
  APP=${APP:-$PREFIX-fn}
  WORKSPACE=${WORKSPACE:-$PREFIX-logs}
  AI=${AI:-$PREFIX-ai}
  if [[ -z $STORAGE ]]; then STORAGE=${PREFIX//-/}st; STORAGE=${STORAGE:0:24}; fi
fi
for pair in "--resource-group:$RG" "--dps:$DPS" "--vault:$VAULT" "--storage:$STORAGE" "--app:$APP" "--workspace:$WORKSPACE" "--app-insights:$AI"; do
  if [[ -z ${pair#*:} ]]; then usage_error "missing ${pair%%:*} (or --prefix)"; fi
done
check_resource_group --resource-group "$RG"
check_dps_name --dps "$DPS"
check_vault_name --vault "$VAULT"
check_storage_name --storage "$STORAGE"
check_app_name --app "$APP"
check_match --workspace "$WORKSPACE" '^[A-Za-z0-9][A-Za-z0-9-]{2,61}[A-Za-z0-9]$' '4-63 letters, digits and -'
check_match --app-insights "$AI" '^[A-Za-z0-9_.()-]{1,255}$' '1-255 letters, digits and _ . ( ) -'

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
# Node 22 and 24 only: 20 reached end of life on 2026-04-30 and az refuses new apps on it (facts §1.1).
if [[ -n $NODE_VERSION ]]; then check_match --node-version "$NODE_VERSION" '^(22|24)$' '22 or 24 (Node 20 is end of life)'; fi
# Flex instance sizes: 2048 and 4096 MB; 512 is documented but refused by ARM today (facts §1.3, R11).
check_match --instance-memory "$INSTANCE_MEMORY" '^(2048|4096)$' '2048 or 4096 (MB)'

case $OPERATOR in
  me | none) ;;
  *) check_match --operator "$OPERATOR" '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' 'me, none, or an object id (GUID)' ;;
esac
case $PUBLISH in
  zip | none) ;;
  func) if ! command -v func >/dev/null 2>&1; then usage_error "--publish-with func: func (Azure Functions Core Tools) is not on PATH"; fi ;;
  *) usage_error "--publish-with must be zip or func, got '$PUBLISH'" ;;
esac

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
# The Node.js options every app gets (scripts/node-options), unless --setting NODE_OPTIONS=... replaces them.
# Its lines that are neither comments nor blank, joined by spaces; an emptied file sets nothing.
NODE_OPTIONS_VALUE=$(grep -v -e '^#' -e '^[[:space:]]*$' "$SCRIPT_DIR/node-options" | tr '\n' ' ' || true)
NODE_OPTIONS_VALUE=${NODE_OPTIONS_VALUE% }
for setting in "${EXTRA_SETTINGS[@]}"; do
  if [[ $setting != *=* ]]; then usage_error "--setting '$setting' must be NAME=VALUE"; fi
  check_match --setting "${setting%%=*}" '^[A-Za-z_][A-Za-z0-9_]*$' 'NAME=VALUE with a NAME of letters, digits and _'
  case ${setting%%=*} in
    KEY_VAULT_URL | DPS_ID_SCOPE | REPLAY_STORE | REPLAY_TABLE_* | AzureWebJobsStorage* | APPLICATIONINSIGHTS_*)
      usage_error "--setting ${setting%%=*} is managed by deploy.sh" ;;
    # Flex Consumption refuses these as app settings or ignores them (facts §1.4): the runtime comes from the app's
    # configuration, the package from one deploy.
    FUNCTIONS_* | WEBSITE_* | SCM_DO_BUILD_DURING_DEPLOYMENT | ENABLE_ORYX_BUILD | TZ)
      usage_error "--setting ${setting%%=*}: Flex Consumption refuses or ignores it (the platform sets the runtime; see docs/deploy.md)" ;;
    NODE_OPTIONS) NODE_OPTIONS_VALUE='' ;;
  esac
  SETTINGS+=("$setting")
done
if [[ -n $NODE_OPTIONS_VALUE ]]; then SETTINGS+=("NODE_OPTIONS=$NODE_OPTIONS_VALUE"); fi
if [[ $PUBLISH != none ]]; then
  if ! command -v unzip >/dev/null 2>&1; then usage_error "unzip is not on PATH (it reads dist/app.zip to tell whether the code changed); install it, or pass --no-publish"; fi
  if [[ ! -f $PROJECT_DIR/package.json ]]; then usage_error "--project-dir $PROJECT_DIR has no package.json"; fi
  if [[ ! -f $PROJECT_DIR/host.json ]]; then usage_error "--project-dir $PROJECT_DIR has no host.json (the Functions host needs it)"; fi
fi

# The portal: deploy-portal.sh, the one source of its steps, on the same group, location and vault. Its own
# argument checks run here first (a --dry-run of it prints nothing we keep), so a bad portal argument stops before
# anything is created.
if [[ ${#PORTAL_ARGS[@]} -gt 0 && $PORTAL != 1 ]]; then usage_error "${PORTAL_ARGS[0]/--/--portal-} needs --portal"; fi
if [[ $PORTAL == 1 ]]; then
  portal_app=$APP-portal portal_storage=${STORAGE:0:21}pst
  if [[ -n $PREFIX ]]; then portal_app=$PREFIX-portal portal_storage=${PREFIX//-/}pst; fi
  # Defaults first: deploy-portal.sh takes the last of a repeated flag, so --portal-app and friends win.
  PORTAL_ARGS=(--location "$LOCATION" -g "$RG" --vault "$VAULT" --app "$portal_app" --storage "${portal_storage:0:24}" "${PORTAL_ARGS[@]}")
  if [[ $PUBLISH == none ]]; then PORTAL_ARGS+=(--no-publish); fi
  if ! portal_check=$(bash "$SCRIPT_DIR/deploy-portal.sh" "${PORTAL_ARGS[@]}" --dry-run 2>&1 >/dev/null); then
    usage_error "--portal: $(head -n 1 <<<"${portal_check#deploy-portal.sh: }")"
  fi
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

# DPS_ID_SCOPE: the webhook requires tokens to name this DPS (aud / id_scope).
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

if [[ $OPERATOR != none ]]; then
  operator_id=$OPERATOR
  operator_type=''
  if [[ $OPERATOR == me ]]; then
    call --into operator_id --placeholder '<signed-in-user-id>' -- az ad signed-in-user show --query id -o tsv
    operator_type=User
  fi
  grant "$VAULT_ID" "$VAULT" "$operator_id" "$operator_type" "$OPERATOR_ROLE"
fi

STORAGE_ID=''
if az_exists STORAGE_ID -- az storage account show -n "$STORAGE" -g "$RG" --query id -o tsv; then
  note "storage account $STORAGE: exists"
else
  call -- az storage account create -n "$STORAGE" -g "$RG" -l "$LOCATION" --sku Standard_LRS --kind StorageV2 \
    --min-tls-version TLS1_2 --allow-blob-public-access false -o none
  call --into STORAGE_ID --placeholder '<storage-id>' -- az storage account show -n "$STORAGE" -g "$RG" --query id -o tsv
fi

# Application Insights on purpose, in this group: left to itself az creates it with a workspace in
# DefaultResourceGroup-<region>, or only warns and leaves the app without telemetry (facts §1.7).
WORKSPACE_ID=''
if az_exists WORKSPACE_ID -- az monitor log-analytics workspace show -g "$RG" -n "$WORKSPACE" --query id -o tsv; then
  note "Log Analytics workspace $WORKSPACE: exists"
else
  call -- az monitor log-analytics workspace create -g "$RG" -n "$WORKSPACE" -l "$LOCATION" -o none
  call --into WORKSPACE_ID --placeholder '<workspace-id>' -- az monitor log-analytics workspace show -g "$RG" -n "$WORKSPACE" --query id -o tsv
fi
ensure_extension application-insights
AI_ID=''
if az_exists AI_ID -- az monitor app-insights component show --app "$AI" -g "$RG" --query id -o tsv; then
  note "Application Insights $AI: exists"
else
  call -- az monitor app-insights component create --app "$AI" -g "$RG" -l "$LOCATION" --workspace "$WORKSPACE_ID" -o none
  call --into AI_ID --placeholder '<app-insights-id>' -- az monitor app-insights component show --app "$AI" -g "$RG" --query id -o tsv
fi

# The operations workbook (docs/operations.md, Workbook), shared on the component. Its name must be a UUID: one derived
# from the component's id, so each component has one and every run finds it again; written only when the file
# changed (a tag holds the file's hash). `workbook create` is a PUT (application-insights extension,
# aaz/latest/monitor/app_insights/workbook/_create.py), so a write replaces the workbook whole.
WORKBOOK_FILE="$SCRIPT_DIR/monitoring/workbook.json"
WORKBOOK_TAG=dpsJwtWebhookWorkbookSha256
[[ -r $WORKBOOK_FILE ]] || fail "$WORKBOOK_FILE is missing"
workbook_sha=$(sha256_hex "$(cat "$WORKBOOK_FILE")")
workbook_hex=$(sha256_hex "${AI_ID,,}")
WORKBOOK_NAME="${workbook_hex:0:8}-${workbook_hex:8:4}-5${workbook_hex:13:3}-a${workbook_hex:17:3}-${workbook_hex:20:12}"
workbook_current=''
if az_exists workbook_current -- az monitor app-insights workbook show -g "$RG" -n "$WORKBOOK_NAME" --query "tags.$WORKBOOK_TAG" -o tsv \
  && [[ $workbook_current == "$workbook_sha" ]]; then
  note "workbook: up to date"
else
  call -- az monitor app-insights workbook create -g "$RG" -n "$WORKBOOK_NAME" -l "$LOCATION" --kind shared --category workbook \
    --display-name "DPS JWT webhook ($APP)" --source-id "$AI_ID" --serialized-data "@$WORKBOOK_FILE" \
    --tags "$WORKBOOK_TAG=$workbook_sha" -o none
fi

APP_ID=''
if az_exists APP_ID -- az functionapp show -g "$RG" -n "$APP" --query id -o tsv; then
  note "function app $APP: exists"
else
  # The newest of 24 and 22 that Flex offers here, so a deploy made next year does not land on a runtime about to
  # end (facts §1.1: Node 24 on Flex is not everywhere yet).
  if [[ -z $NODE_VERSION ]]; then
    offered=''
    call --into offered --placeholder '' -- az functionapp list-flexconsumption-runtimes --location "$LOCATION" --runtime node --query '[].version' -o tsv
    for candidate in 24 22; do
      if grep -qxF -- "$candidate" <<<"$offered"; then NODE_VERSION=$candidate; break; fi
    done
    if [[ -z $NODE_VERSION && $DRY_RUN == 1 ]]; then
      NODE_VERSION=22
      note "Node.js 22: a dry run cannot ask which versions Flex Consumption offers in $LOCATION"
    elif [[ -z $NODE_VERSION ]]; then
      fail "Flex Consumption in $LOCATION offers no Node 24 or 22 (offered: $(tr '\n' ' ' <<<"$offered")); pick another --location (az functionapp list-flexconsumption-locations)"
    else
      note "Node.js $NODE_VERSION (the newest of 24 and 22 that Flex Consumption offers in $LOCATION)"
    fi
  fi
  # Flex Consumption: no --os-type, --consumption-plan-location, --plan or --functions-version (facts §1.3). The
  # package container is reached by the app's identity. --assign-identity without --scope: no role from az.
  call -- az functionapp create -g "$RG" -n "$APP" --storage-account "$STORAGE" --flexconsumption-location "$LOCATION" \
    --runtime node --runtime-version "$NODE_VERSION" --instance-memory "$INSTANCE_MEMORY" \
    --deployment-storage-name "$STORAGE" --deployment-storage-auth-type SystemAssignedIdentity \
    --app-insights "$AI" --assign-identity '[system]' -o none
  call --into APP_ID --placeholder '<function-app-id>' -- az functionapp show -g "$RG" -n "$APP" --query id -o tsv
fi

PRINCIPAL_ID=''
# (A dry run plans for the app created above, whose identity create --assign-identity made.)
call --into PRINCIPAL_ID --placeholder '<principal-id>' -- az functionapp identity show -g "$RG" -n "$APP" --query principalId -o tsv
if [[ -z $PRINCIPAL_ID ]]; then
  call --into PRINCIPAL_ID --placeholder '<principal-id>' -- az functionapp identity assign -g "$RG" -n "$APP" --query principalId -o tsv
else
  note "function app $APP: system-assigned identity exists"
fi
# What the identity may do, and nothing more: read the vault's secrets; its own storage for the host and the
# package (blob) and the replay table; send telemetry with Entra ID.
grant "$VAULT_ID" "$VAULT" "$PRINCIPAL_ID" ServicePrincipal "$READER_ROLE"
grant "$STORAGE_ID" "$STORAGE" "$PRINCIPAL_ID" ServicePrincipal "$HOST_STORAGE_ROLE"
if [[ $REPLAY == 1 ]]; then grant "$STORAGE_ID" "$STORAGE" "$PRINCIPAL_ID" ServicePrincipal "$TABLE_ROLE"; fi
grant "$AI_ID" "$AI" "$PRINCIPAL_ID" ServicePrincipal "$METRICS_ROLE"

# ---------------------------------------------------------------------------------------------------------------------
# App settings: written only when they differ (a write restarts the app). Flex refuses FUNCTIONS_WORKER_RUNTIME and
# friends; none is set here.

MANAGED=("KEY_VAULT_URL=$VAULT_URI" "DPS_ID_SCOPE=$ID_SCOPE"
  "AzureWebJobsStorage__accountName=$STORAGE"
  "APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD")
REMOVE=(AzureWebJobsStorage)
if [[ $REPLAY == 1 ]]; then
  MANAGED+=("REPLAY_STORE=table" "REPLAY_TABLE_ACCOUNT_URL=https://$STORAGE.table.core.windows.net")
else
  REMOVE+=(REPLAY_STORE REPLAY_TABLE_ACCOUNT_URL)
  note "--no-replay: replay protection is off; a token can be presented again until it expires (JWT_MAX_LIFETIME_SECONDS)"
fi
SETTINGS=("${MANAGED[@]}" "${SETTINGS[@]}")
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
# Host storage by identity: the connection string az wrote at create goes, after the identity settings are in
# (facts §1.5). Only names are read: the value holds the account key.
query=''
for name in "${REMOVE[@]}"; do query+="${query:+ || }name=='$name'"; done
present=''
call --into present --placeholder 'AzureWebJobsStorage' -- az functionapp config appsettings list -g "$RG" -n "$APP" --query "[?$query].name" -o tsv
if [[ -n $present ]]; then
  mapfile -t stale <<<"$present"
  call -- az functionapp config appsettings delete -g "$RG" -n "$APP" --setting-names "${stale[@]}" -o none
fi

# ---------------------------------------------------------------------------------------------------------------------
# The code: dist/app.zip from `npm run package` (the bundle, host.json, package.json), published when it changed.

if [[ $PUBLISH != none ]]; then
  if [[ $DRY_RUN != 1 && ! -d $PROJECT_DIR/node_modules ]]; then
    fail "$PROJECT_DIR has no node_modules: run npm ci there first (npm run package bundles from it)"
  fi
  call --passthrough --cwd "$PROJECT_DIR" -- npm run package
  hash='<package-sha256>'
  if [[ $DRY_RUN != 1 ]]; then
    if [[ ! -f $PROJECT_DIR/dist/app.zip ]]; then fail "npm run package did not write dist/app.zip in $PROJECT_DIR"; fi
    hash=$(package_hash "$PROJECT_DIR/dist/app.zip")
  fi
  published=''
  call --into published --placeholder '' -- az functionapp show -g "$RG" -n "$APP" --query "tags.$HASH_TAG" -o tsv
  if [[ $published == "$hash" && $FORCE_PUBLISH != 1 ]]; then
    note "code: unchanged since the last publish (sha256 $hash); not published (--force-publish to publish anyway)"
  else
    if [[ $PUBLISH == func ]]; then
      # func publishes a project folder: the unpacked package, so both paths ship the same files. func reads the
      # worker runtime from local.settings.json, which it does not upload.
      stage='<staging-dir>'
      if [[ $DRY_RUN != 1 ]]; then
        work_dir
        stage=$WORK_DIR/package
        mkdir -p "$stage"
        unzip -q "$PROJECT_DIR/dist/app.zip" -d "$stage"
        printf '{"IsEncrypted":false,"Values":{"FUNCTIONS_WORKER_RUNTIME":"node"}}\n' >"$stage/local.settings.json"
      fi
      call --passthrough --cwd "$stage" -- func azure functionapp publish "$APP" --no-build
    else
      call --cwd "$PROJECT_DIR" -- az functionapp deployment source config-zip -g "$RG" -n "$APP" --src dist/app.zip -o none
    fi
    # Tags only (az resource tag would GET and PUT the whole site, facts §2.3.4).
    call -- az tag update --resource-id "$APP_ID" --operation Merge --tags "$HASH_TAG=$hash" -o none
  fi
fi

if [[ $PORTAL == 1 ]]; then
  args=("${PORTAL_ARGS[@]}")
  if [[ $DRY_RUN == 1 ]]; then args+=(--dry-run); fi
  note "# the portal: scripts/deploy-portal.sh $(quote_cmd "${args[@]}")"
  bash "$SCRIPT_DIR/deploy-portal.sh" "${args[@]}" || fail "the portal's deploy failed (the webhook is deployed; run deploy.sh --portal again)"
fi

if [[ $DRY_RUN == 1 ]]; then exit 0; fi
say ""
say "Deployed to $RG ($LOCATION):"
say "  IoT hubs:     ${HUB_HOSTS[*]}"
say "  DPS:          $DPS (id scope $ID_SCOPE)"
say "  Key Vault:    $VAULT_URI (RBAC; the app's identity has \"$READER_ROLE\")"
say "  Function app: $APP, Flex Consumption (https://$APP.azurewebsites.net/api/validatejwt)"
if [[ $REPLAY == 1 ]]; then
  say "  Replay store: table usedtokens in $STORAGE, by identity"
else
  say "  Replay store: off (--no-replay)"
fi
say "  Telemetry:    $AI (Entra ID ingestion) in $WORKSPACE"
say "Role assignments can take up to 10 minutes to apply; until then the host may fail to reach its storage."
say "For the other scripts:"
say "  export DPSJWT_RESOURCE_GROUP=$RG DPSJWT_DPS=$DPS DPSJWT_VAULT=$VAULT DPSJWT_APP=$APP"
