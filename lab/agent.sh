#!/bin/sh
# The lab's command agent on a serial port ($1). The host sends one line per
# command: "ID BASE64(script)". The agent runs the script with stdin from
# /dev/null and answers, base64 so that nothing on the wire is mangled:
#   @@BEGIN ID OUT_BYTES ERR_BYTES
#   base64(stdout)
#   @@SEP ID
#   base64(stderr)
#   @@END ID EXIT_STATUS
tty=$1
stty -F "$tty" raw -echo
exec <"$tty" >"$tty" 2>/dev/null
d=/run/agent
mkdir -p $d
echo "@@READY $(uname -r)"
while read -r id b64; do
    [ -n "$id" ] || continue
    echo "$b64" | base64 -d >$d/cmd
    (cd /root && sh $d/cmd) </dev/null >$d/out 2>$d/err
    rc=$?
    echo "@@BEGIN $id $(wc -c <$d/out) $(wc -c <$d/err)"
    base64 $d/out
    echo "@@SEP $id"
    base64 $d/err
    echo "@@END $id $rc"
    rm -f $d/out $d/err $d/cmd
done
