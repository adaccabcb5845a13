#!/bin/sh
# The library exports exactly the ten IFDH functions pcscd binds, and no
# other IFDH symbol.
set -eu
lib=$1
want="IFDHCloseChannel IFDHControl IFDHCreateChannel IFDHCreateChannelByName IFDHGetCapabilities IFDHICCPresence IFDHPowerICC IFDHSetCapabilities IFDHSetProtocolParameters IFDHTransmitToICC"
got=$(nm -D --defined-only "$lib" | awk '$3 ~ /^IFDH/ {print $3}' | sort | tr '\n' ' ' | sed 's/ $//')
if [ "$got" != "$want" ]; then
    echo "exports: expected: $want" >&2
    echo "exports: found:    $got" >&2
    exit 1
fi
echo "exports: the ten IFDH functions, nothing else"
