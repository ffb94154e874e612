#!/usr/bin/env bash
# The main job end to end on a fresh Debian machine: install what is needed,
# build Net::QMTP, start a real QMTP server (mailfront under tcpserver) on
# loopback, send it a message with qmtp-send (which uses Net::QMTP), and
# show the per-recipient results and the message as the server stored it.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
if ! command -v tcpserver >/dev/null || ! [ -x /usr/sbin/mailfront ] || ! command -v make >/dev/null; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq build-essential perl mailfront ucspi-tcp >/dev/null
fi

[ -f Makefile ] || perl Makefile.PL >/dev/null
make >/dev/null

queue=$(mktemp -d)
mkdir -p "$queue/tmp" "$queue/new"
port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1")->sockport')
QUEUEDIR=$queue QUEUEDIR_NOSYNC=1 tcpserver -R -H -l0 127.0.0.1 "$port" \
    /usr/sbin/mailfront qmtp queuedir accept 2>"$queue/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$queue"' EXIT
for _ in $(seq 50); do
    perl -MIO::Socket::INET -e "exit !IO::Socket::INET->new('127.0.0.1:$port')" 2>/dev/null && break
    sleep 0.1
done

echo "mailfront is listening on 127.0.0.1 port $port."
echo "Sending a message to two recipients with qmtp-send (Net::QMTP); per-recipient results:"
printf 'From: alice@example.org\nTo: bob@example.net, carol@example.com\nSubject: hello over QMTP\n\nHi Bob and Carol!\n' |
    perl -Mblib blib/script/qmtp-send --verbose --answers package --server 127.0.0.1 --port "$port" --sender alice@example.org \
        bob@example.net carol@example.com | sed 's/^/  /'
echo "qmtp-send exit status: ${PIPESTATUS[1]} (0: every recipient accepted)"

for _ in $(seq 50); do
    [ -n "$(ls -A "$queue/new")" ] && break
    sleep 0.1
done
file=$(ls "$queue/new" | head -n 1)
echo
echo "mailfront stored it as new/$file: sender and recipients, each ended by NUL (shown as |), then the message:"
tr '\0' '|' < "$queue/new/$file" | sed 's/^/  /'
