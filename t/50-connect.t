# Where the client connects: host:port and [v6]:port forms, IPv6, every
# address of a name in turn, failures that say what went wrong.
use strict;
use warnings;
use Test::More;
use IO::Socket::IP;
use Socket qw(getaddrinfo SOCK_STREAM);
use POSIX ();

use lib 't/lib';
use Test::QMTPServer;
use Net::QMTP;

alarm 60;

my $v4 = Test::QMTPServer->new(sub {
    my ($conn) = @_;
    while ($conn->read_package) { $conn->answer_all('K', 'v4') }
});
my $port = $v4->port;

sub try_send {
    my ($q) = @_;
    $q->sender('s');
    $q->recipient('r');
    $q->message('m');
    my $r = $q->send or return 'undef: ' . $q->error;
    return $r->{r};
}

my $q = Net::QMTP->new("127.0.0.1:$port", Timeout => 5);
ok($q, 'host:port form') or diag $@;
is(try_send($q), 'success: v4', '... and it sends');

$q = Net::QMTP->new("127.0.0.1:$port", Port => 1, Timeout => 5);
ok($q, 'a port in HOST wins over the Port option');

# server() takes effect at the next reconnect only.
$q->server('127.0.0.1:1');
is(try_send($q), 'success: v4', 'server() does not move an open connection');
is($q->reconnect, undef, 'reconnect goes to the new server');
like($q->error, qr/127\.0\.0\.1 port 1\b/, '... and error() names it');
$q->server("127.0.0.1:$port");
ok($q->reconnect, 'and back');
is(try_send($q), 'success: v4', '... and sends there');
undef $q; # the scripted server serves one connection at a time

# IPv6, where this machine has it.
my $v6_listen = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 5, ReuseAddr => 1);
SKIP: {
    skip 'no IPv6 loopback on this machine', 4 unless $v6_listen;
    my $p6 = $v6_listen->sockport;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        alarm 30;
        while (my $c = $v6_listen->accept) {
            my $buf = '';
            while (sysread($c, $buf, 65536, length $buf)) {
                if ($buf =~ /,\d+:[^,]*,\d+:(?:\d+:[^,]*,)+,\z/) { syswrite $c, '3:Kv6,'; $buf = '' }
            }
            close $c;
        }
        POSIX::_exit(0);
    }
    close $v6_listen;
    my $q6 = Net::QMTP->new("[::1]:$p6", Timeout => 5);
    ok($q6, '[v6]:port form') or diag $@;
    is($q6 && try_send($q6), 'success: v6', '... and it sends over IPv6');
    $q6 = Net::QMTP->new('::1', Port => $p6, Timeout => 5);
    ok($q6, 'a bare IPv6 address with Port') or diag $@;
    $q6 = Net::QMTP->new("[::1]", Port => $p6, Timeout => 5);
    ok($q6, '[v6] without a port uses Port') or diag $@;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

# Every address of a name in turn. .ci/run maps qmtp-dual.test to ::1 and
# 127.0.0.1 in /etc/hosts; only 127.0.0.1 listens here, so whichever comes
# first, the client must end up on it.
my ($err, @addrs) = getaddrinfo('qmtp-dual.test', $port, { socktype => SOCK_STREAM });
SKIP: {
    skip 'qmtp-dual.test does not resolve to two addresses (set up by .ci/run)', 2
        if $err || @addrs < 2 and !$ENV{NET_QMTP_REQUIRE_MAILFRONT};
    my $qd = Net::QMTP->new('qmtp-dual.test', Port => $port, Timeout => 5, ConnectTimeout => 5);
    ok($qd, 'a name with two addresses, one refusing: the other is used') or diag $@;
    is($qd && try_send($qd), 'success: v4', '... and it sends');
}

# LocalAddr binds the source address.
{
    my $peer = Test::QMTPServer->new(sub {
        my ($conn) = @_;
        while ($conn->read_package) { $conn->answer_all('K', $conn->socket->peerhost) }
    });
    my $from = Net::QMTP->new('127.0.0.1', Port => $peer->port, LocalAddr => '127.0.0.2', Timeout => 5);
    ok($from, 'LocalAddr => 127.0.0.2') or diag $@;
    is($from && try_send($from), 'success: 127.0.0.2', '... and the server sees that source address');
    undef $from;
    $@ = '';
    is(Net::QMTP->new('127.0.0.1', Port => $peer->port, LocalAddr => '::1', ConnectTimeout => 2), undef,
        'a LocalAddr of another family than the server: no connection');
    like($@, qr/from local address '::1'/, '... and $@ names the local address');
    eval { Net::QMTP->new('127.0.0.1', LocalAddr => '', DeferConnect => 1) };
    like($@, qr/LocalAddr must be/, 'an empty LocalAddr croaks');
}

# A list of servers is tried in order until one connects.
{
    require IO::Socket::INET;
    my $gone = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0) or die $!;
    my $dead = $gone->sockport;
    close $gone;
    my $ql = Net::QMTP->new(["127.0.0.1:$dead", "127.0.0.1:$port"], Timeout => 5);
    ok($ql, 'a list of servers: the first refuses, the second is used') or diag $@;
    is($ql && try_send($ql), 'success: v4', '... and it sends');
    is_deeply($ql && $ql->server, ["127.0.0.1:$dead", "127.0.0.1:$port"], 'server() returns the list');
    undef $ql;
    $@ = '';
    is(Net::QMTP->new(["127.0.0.1:$dead", "127.0.0.1:1"]), undef, 'all of them refuse: undef');
    like($@, qr/port $dead\b.*; .*port 1\b/, '$@ says why for each');
    eval { Net::QMTP->new([]) };
    like($@, qr/^No server specified in constructor/, 'an empty list croaks');
}

# A Unix-domain socket path as the server.
{
    require IO::Socket::UNIX;
    require File::Temp;
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    my $path = "$dir/qmtp.sock";
    my $listen = IO::Socket::UNIX->new(Local => $path, Listen => 5) or die "unix listen: $!";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        alarm 30;
        while (my $c = $listen->accept) {
            my $buf = '';
            while (sysread($c, $buf, 65536, length $buf)) {
                if ($buf =~ /,\d+:[^,]*,\d+:(?:\d+:[^,]*,)+,\z/) { syswrite $c, '5:Kunix,'; $buf = '' }
            }
            close $c;
        }
        POSIX::_exit(0);
    }
    close $listen;
    my $qu = Net::QMTP->new($path, Timeout => 5);
    ok($qu, 'a Unix socket path as the server') or diag $@;
    is($qu && try_send($qu), 'success: unix', '... and it sends');
    undef $qu;
    kill 'TERM', $pid;
    waitpid $pid, 0;
    $@ = '';
    is(Net::QMTP->new("$dir/none.sock"), undef, 'a socket path nobody listens on: undef');
    like($@, qr/unix socket \Q$dir\E\/none\.sock.*No such file/, '... and $@ says why');
}

# Failures say what went wrong.
$@ = '';
is(Net::QMTP->new('no-such-host.invalid', Port => $port), undef, 'an unknown host name: undef');
like($@, qr/cannot resolve 'no-such-host\.invalid'/, '... and $@ says it did not resolve');

done_testing;
