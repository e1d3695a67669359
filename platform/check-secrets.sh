#!/bin/sh
# Refuse to start the platform with an empty, placeholder or short secret. compose.yaml runs
# this as the one-shot service `secrets-check`; PostgreSQL and the S3 store (and so MLflow and
# the dashboard after them) start only once it has passed. Also runs on its own:
#   env $(grep -v '^#' platform/.env | xargs) sh platform/check-secrets.sh
MIN_LENGTH=12
status=0
for name in POSTGRES_PASSWORD S3_SECRET_KEY MLFLOW_ADMIN_PASSWORD MLFLOW_SECRET_KEY; do
  eval "value=\${$name:-}"
  case "$value" in
    "") echo "check-secrets: $name is empty; set it in platform/.env" >&2; status=1 ;;
    *change-me*) echo "check-secrets: $name is still the placeholder of .env.example; set a real secret in platform/.env" >&2
                 status=1 ;;
    *) if [ "${#value}" -lt "$MIN_LENGTH" ]; then
         echo "check-secrets: $name has ${#value} characters; use at least $MIN_LENGTH (platform/.env)" >&2
         status=1
       fi ;;
  esac
done
[ "$status" -eq 0 ] && echo "check-secrets: every secret is set"
exit "$status"
