#!/bin/sh
# make_test_certs.sh DIR [PREFIX]: a throw-away CA, a server certificate for
# localhost and 127.0.0.1, and a client certificate, all signed by the CA and
# valid for a day, for the TLS and mTLS tests (C++ and Python). Files:
# PREFIXca.pem PREFIXserver.pem PREFIXserver.key PREFIXclient.pem PREFIXclient.key.
set -eu
dir=$1
p=${2:-}
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key "${p}ca.key"
openssl req -x509 -new -key "${p}ca.key" -out "${p}ca.pem" -days 1 -subj "/CN=inferd test CA ${p}" 2>/dev/null
for who in server client; do
  key "${p}${who}.key"
  openssl req -new -key "${p}${who}.key" -out "${p}${who}.csr" -subj "/CN=${p}${who}" 2>/dev/null
  if [ "$who" = server ]; then
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "${p}${who}.ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' > "${p}${who}.ext"
  fi
  openssl x509 -req -in "${p}${who}.csr" -CA "${p}ca.pem" -CAkey "${p}ca.key" -CAcreateserial \
    -out "${p}${who}.pem" -days 1 -extfile "${p}${who}.ext" 2>/dev/null
  rm -f "${p}${who}.csr" "${p}${who}.ext"
done
