#!/bin/sh
# Certificates for the plant's MQTT broker and its clients, made with the openssl CLI.
#
#   make-certs.sh ca     DIR                  DIR/ca.key, DIR/ca.crt     (the plant's own CA)
#   make-certs.sh server DIR NAME SAN         DIR/NAME.key, DIR/NAME.crt (the broker)
#   make-certs.sh client DIR NAME             DIR/NAME.key, DIR/NAME.crt (a client, CN=NAME)
#
# SAN lists every name and address clients use to reach the broker, e.g.
# "DNS:broker.plant.local,IP:10.20.0.5". Keys are ECDSA P-256 and unencrypted
# (services start unattended): keep them mode 0600 or 0640 to the group of
# the service that reads them. DAYS (default 825; 3650 for the CA) sets the
# validity. Keep ca.key offline: whoever holds it can make certificates the
# broker and plantwatch trust. A client's CN is its user name on the broker
# (use_identity_as_username); plantwatch gateway add issues a gateway's the
# same way. tests/test_broker_security.py runs this script.
set -eu

usage() {
    sed -n '3,6p' "$0" >&2
    exit 2
}

[ $# -ge 2 ] || usage
what=$1
dir=$2
mkdir -p "$dir"
umask 077

newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

sign() {  # sign NAME EXTENSIONS: DIR/NAME.csr -> DIR/NAME.crt, signed by DIR/ca.*
    [ -f "$dir/ca.key" ] && [ -f "$dir/ca.crt" ] || {
        echo "no CA in $dir: run '$0 ca $dir' first" >&2
        exit 1
    }
    printf '%s\n' "$2" >"$dir/$1.ext"
    openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days "${DAYS:-825}" -sha256 -extfile "$dir/$1.ext" -out "$dir/$1.crt"
    chmod 644 "$dir/$1.crt"
    rm -f "$dir/$1.csr" "$dir/$1.ext"
}

case $what in
ca)
    [ $# -eq 2 ] || usage
    if [ -e "$dir/ca.key" ]; then
        echo "$dir/ca.key exists; not replacing the CA (every certificate depends on it)" >&2
        exit 1
    fi
    newkey "$dir/ca.key"
    openssl req -new -x509 -key "$dir/ca.key" -sha256 -days "${DAYS:-3650}" \
        -subj "/CN=plantwatch MQTT CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.crt"
    chmod 644 "$dir/ca.crt"
    ;;
server)
    [ $# -eq 4 ] || usage
    newkey "$dir/$3.key"
    openssl req -new -key "$dir/$3.key" -subj "/CN=$3" -out "$dir/$3.csr"
    sign "$3" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$4"
    ;;
client)
    [ $# -eq 3 ] || usage
    newkey "$dir/$3.key"
    openssl req -new -key "$dir/$3.key" -subj "/CN=$3" -out "$dir/$3.csr"
    sign "$3" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
    ;;
*)
    usage
    ;;
esac
echo "made $dir/${3:-ca}.crt" >&2
