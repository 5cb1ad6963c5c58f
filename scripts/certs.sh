#!/usr/bin/env bash
# Makes a local CA and one mTLS certificate per component (idempotent).
#   scripts/certs.sh [OUT_DIR] [extra component names...]
# Each certificate carries the component's identity as a URI SAN
# (spiffe://paygate.local/...), which is what the services authorize on, plus
# DNS:localhost and IP:127.0.0.1 so it works as a server certificate locally.
set -euo pipefail
out=${1:-.certs}
shift || true
days=${CERT_DAYS:-825}
trust=paygate.local
mkdir -p "$out"
umask 077

if [ ! -f "$out/ca.key" ] || [ ! -f "$out/ca.crt" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$out/ca.key" -out "$out/ca.crt" -days "$days" \
    -subj "/O=paygate/CN=paygate local CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

# name -> identity path
identity_of() {
  case "$1" in
    gateway) echo "gateway" ;;
    bank-*) echo "bank/$1" ;;
    credit-bureau) echo "credit-bureau" ;;
    *) echo "client/$1" ;;
  esac
}

make_cert() {
  local name=$1 id
  id=$(identity_of "$name")
  [ -f "$out/$name.crt" ] && [ -f "$out/$name.key" ] && return 0
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$out/$name.key" -out "$out/$name.csr" -subj "/O=paygate/CN=$name" 2>/dev/null
  cat > "$out/$name.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=URI:spiffe://$trust/$id,DNS:localhost,DNS:$name,IP:127.0.0.1
EXT
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -out "$out/$name.crt" -days "$days" -extfile "$out/$name.ext" 2>/dev/null
  rm -f "$out/$name.csr" "$out/$name.ext"
}

for name in gateway bank-a bank-b credit-bureau checkout paycli admin "$@"; do
  make_cert "$name"
done
chmod 644 "$out"/*.crt
echo "certificates in $out: CA $out/ca.crt; $(cd "$out" && ls *.crt | grep -v '^ca.crt$' | sed 's/\.crt$//' | tr '\n' ' ')"
