#!/bin/sh
# The start of compose.yaml's `proxy`: CORS_ORIGINS (origins separated by commas or spaces,
# e.g. "http://localhost:3000,https://tickets.example.com") becomes nginx's map of allowed
# origins, then nginx runs in the foreground. An entry that is not a plain origin
# (scheme://host[:port], nothing after) stops the start: it would end up in nginx's config.
set -eu
map="${CORS_MAP:-/etc/nginx/cors-origins.map}"
: > "$map"
for origin in $(printf '%s' "${CORS_ORIGINS:-}" | tr ',' ' '); do
    case "$origin" in
        *[!A-Za-z0-9.:/-]* | *://*/* | *://) ;;
        http://?* | https://?*)
            printf '"%s" "%s";\n' "$origin" "$origin" >> "$map"
            continue
            ;;
    esac
    echo "proxy: CORS_ORIGINS: not an origin (scheme://host[:port]): $origin" >&2
    exit 2
done
exec nginx -g 'daemon off;'
