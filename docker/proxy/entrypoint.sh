#!/bin/sh
# The proxy's configuration from the environment: where the API and the webserver are, which port.
set -eu
: "${API_UPSTREAM:=api:8000}" "${UI_UPSTREAM:=webserver:3000}" "${LISTEN_PORT:=8080}"
export API_UPSTREAM UI_UPSTREAM LISTEN_PORT
envsubst '$API_UPSTREAM $UI_UPSTREAM $LISTEN_PORT' </etc/automat/automat.conf.template >/etc/nginx/conf.d/automat.conf
exec nginx -g 'daemon off;'
