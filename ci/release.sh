#!/usr/bin/env bash
# One release, in the order CI runs it: build, scan, sign, publish, notify. The release workflow
# (.github/workflows/release.yml) runs `release.sh build` in a job without secrets, since building
# runs the app's and its dependencies' own code, then `release.sh ship` in a job that has them;
# tests/unit/test_release_cli.py runs `release.sh` (both, in one go) locally.
#
# Settings come from the environment. Secrets reach only the command that needs each one.
#   OUTPOST_APP_SOURCE      the app's source folder                 (default: examples/hello)
#   OUTPOST_APP             the app's name in outpost               (default: the distribution's)
#   OUTPOST_OUT             the release folder, empty before build  (default: dist)
#   OUTPOST_ALLOW_HIGH      1: release despite HIGH bandit findings (optional)
#   OUTPOST_SIGNING_KEY     the Ed25519 private key, PEM text       (ship: required)
#   OUTPOST_SIGNING_PUBLIC_KEY  the public key the master trusts, as its signing_keys list it;
#                           publish checks the signature against it (default: the signing key's)
#   OUTPOST_PUBLISH_URL     an https:// artifact store to PUT to    (ship: this or the next)
#   OUTPOST_PUBLISH_ROOT    a folder the master serves              (ship: this or the previous)
#   OUTPOST_URL_PREFIX      what the master calls that folder       (default: salt://releases)
#   OUTPOST_PUBLISH_TOKEN   a bearer token for the store            (optional)
#   OUTPOST_HOOK_URL        the master's webhook                    (ship: required)
#   OUTPOST_WEBHOOK_SECRET  the webhook's shared secret             (ship: required)
#   OUTPOST_CACERT          a private CA for the store and the hook (optional)
set -euo pipefail

phase=${1:-all}
out=${OUTPOST_OUT:-dist}
# Still set, no longer inherited: outpost's children (pip, build backends, scanners) never see
# them. Each is handed to the one command that uses it.
export -n OUTPOST_SIGNING_KEY OUTPOST_PUBLISH_TOKEN OUTPOST_WEBHOOK_SECRET

step() {
    # Folded sections in the Actions log, a plain heading anywhere else.
    if [[ "${GITHUB_ACTIONS:-}" == true ]]; then echo "::group::$*"; else echo "== $*"; fi
}

end_step() {
    if [[ "${GITHUB_ACTIONS:-}" == true ]]; then echo "::endgroup::"; fi
}

the_manifest() {
    local found=("$out"/*.manifest.json)
    if [[ ${#found[@]} -ne 1 || ! -f "${found[0]}" ]]; then
        echo "release.sh: expected one manifest in $out, found ${#found[@]}" >&2
        return 1
    fi
    echo "${found[0]}"
}

build_and_scan() {
    local source_dir=${OUTPOST_APP_SOURCE:-examples/hello}
    local build_options=() scan_options=() manifest
    if [[ -n "${OUTPOST_APP:-}" ]]; then
        build_options+=(--app "$OUTPOST_APP")
    fi
    if [[ "${OUTPOST_ALLOW_HIGH:-}" == 1 ]]; then
        scan_options+=(--allow-high)
    fi
    if compgen -G "$out/*.manifest.json" >/dev/null; then
        echo "release.sh: $out already holds a release; start from an empty folder" >&2
        return 2
    fi

    step "build $source_dir"
    outpost release build "$source_dir" --out "$out" "${build_options[@]}"
    end_step

    step "scan"
    manifest=$(the_manifest)
    outpost release scan "$manifest" "${scan_options[@]}"
    end_step
}

ship() {
    : "${OUTPOST_SIGNING_KEY:?the Ed25519 private key (PEM) to sign with}"
    : "${OUTPOST_HOOK_URL:?the master webhook URL}"
    : "${OUTPOST_WEBHOOK_SECRET:?the webhook shared secret}"
    local manifest tls_options=() publish_options=() artifact_url
    manifest=$(the_manifest)
    if [[ -n "${OUTPOST_CACERT:-}" ]]; then
        tls_options+=(--cacert "$OUTPOST_CACERT")
    fi
    if [[ -n "${OUTPOST_PUBLISH_URL:-}" && -z "${OUTPOST_PUBLISH_ROOT:-}" ]]; then
        publish_options+=(--url "$OUTPOST_PUBLISH_URL" "${tls_options[@]}")
        if [[ -n "${OUTPOST_PUBLISH_TOKEN:-}" ]]; then
            publish_options+=(--token-env OUTPOST_PUBLISH_TOKEN)
        fi
    elif [[ -n "${OUTPOST_PUBLISH_ROOT:-}" && -z "${OUTPOST_PUBLISH_URL:-}" ]]; then
        publish_options+=(--root "$OUTPOST_PUBLISH_ROOT")
        publish_options+=(--url-prefix "${OUTPOST_URL_PREFIX:-salt://releases}")
    else
        echo "release.sh: set one of OUTPOST_PUBLISH_URL and OUTPOST_PUBLISH_ROOT" >&2
        return 2
    fi

    step "sign"
    # The key is on disk only while sign runs, readable by its owner only. Global, so the trap
    # still finds it when a failure ends the script from inside this function.
    key_file=$(umask 077 && mktemp)
    public_file=$(mktemp)
    trap 'rm -f "$key_file" "$public_file"' EXIT
    printf '%s\n' "$OUTPOST_SIGNING_KEY" >"$key_file"
    outpost release sign "$manifest" --key "$key_file"
    if [[ -n "${OUTPOST_SIGNING_PUBLIC_KEY:-}" ]]; then
        printf '%s\n' "$OUTPOST_SIGNING_PUBLIC_KEY" >"$public_file"
    else
        outpost release public-key --key "$key_file" >"$public_file"
    fi
    rm -f "$key_file"
    end_step

    step "publish"
    artifact_url=$(OUTPOST_PUBLISH_TOKEN=${OUTPOST_PUBLISH_TOKEN:-} \
        outpost release publish "$manifest" --public "$public_file" "${publish_options[@]}")
    echo "$artifact_url"
    end_step

    step "notify"
    OUTPOST_WEBHOOK_SECRET=$OUTPOST_WEBHOOK_SECRET outpost release notify "$manifest" \
        --hook "$OUTPOST_HOOK_URL" --artifact-url "$artifact_url" \
        --secret-env OUTPOST_WEBHOOK_SECRET "${tls_options[@]}"
    end_step
}

case $phase in
    build) build_and_scan ;;
    ship) ship ;;
    # Two lines, not `&&`: bash ignores set -e inside a function called on the left of `&&`.
    all)
        build_and_scan
        ship
        ;;
    *)
        echo "usage: ci/release.sh [build|ship|all]" >&2
        exit 2
        ;;
esac
