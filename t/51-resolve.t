# Name resolution keeps to ConnectTimeout (and TotalTimeout): a name server
# that never answers cannot hold new() longer, and signal handlers run
# while the lookup waits. The test runs itself again in new user, mount and
# network namespaces (unshare(1)), where /etc/resolv.conf names 127.0.0.1
# and a UDP socket there takes every query and answers none.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Socket qw(AF_INET SOCK_DGRAM);

use lib 't/lib';
use Test::QMTPServer;
use Net::QMTP;

my $INSIDE = '--inside-namespaces';

# Exit status of a command run with its output thrown away.
sub quietly {
    my @cmd = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    return $?;
}

if (!@ARGV || $ARGV[0] ne $INSIDE) {
    plan skip_all => 'needs Linux namespaces' unless $^O eq 'linux';
    my ($unshare) = grep { -x } map { "$_/unshare" } split(/:/, $ENV{PATH} || ''), '/usr/bin', '/bin';
    plan skip_all => 'unshare(1) is not installed' unless $unshare;
    my @unshare = ($unshare, '--user', '--map-root-user', '--mount', '--net');
    plan skip_all => 'new user, mount and network namespaces are not permitted here'
        if quietly(@unshare, $^X, '-e', '0') != 0;
    exec { $unshare } @unshare, '--', $^X, (map { "-I$_" } grep { !ref } @INC), $0, $INSIDE;
    die "exec $unshare: $!";
}

alarm 60;

sub spit {
    my ($file, $text) = @_;
    open my $fh, '>', $file or die "$file: $!";
    print $fh $text;
    close $fh or die "$file: $!";
    chmod 0644, $file;
}

# lo comes up down in a new network namespace.
sub lo_up {
    my $ok = eval {
        socket(my $s, AF_INET, SOCK_DGRAM, 0) or die;
        my $ifr = pack('a16 x24', 'lo');                    # struct ifreq
        ioctl($s, 0x8913, $ifr) or die;                     # SIOCGIFFLAGS
        my $flags = unpack('x16 s', $ifr);
        substr($ifr, 16, 2) = pack('s', $flags | 1);        # IFF_UP
        ioctl($s, 0x8914, $ifr) or die;                     # SIOCSIFFLAGS
        1;
    };
    return $ok || quietly('ip', 'link', 'set', 'lo', 'up') == 0;
}

my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;
spit("$dir/resolv.conf", "nameserver 127.0.0.1\noptions timeout:3 attempts:1\n");
spit("$dir/nsswitch.conf", "hosts: files dns\n");
my $why;
my $silent;
if (!lo_up()) {
    $why = 'cannot bring lo up';
} elsif (!($silent = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => 53))) {
    $why = "cannot bind 127.0.0.1:53: $@";
} elsif (quietly('mount', '--bind', "$dir/resolv.conf", '/etc/resolv.conf') != 0) {
    $why = 'cannot bind-mount /etc/resolv.conf';
} elsif (-e '/etc/nsswitch.conf' && quietly('mount', '--bind', "$dir/nsswitch.conf", '/etc/nsswitch.conf') != 0) {
    $why = 'cannot bind-mount /etc/nsswitch.conf';
}
plan skip_all => "namespaces set up only in part: $why" if $why;
# nscd, if running, would answer from outside.
quietly('mount', '--bind', '/dev/null', '/var/run/nscd/socket') if -e '/var/run/nscd/socket';

my $hangs = 'name.that.hangs';

{
    my $t0 = time;
    $@ = '';
    my $q = Net::QMTP->new($hangs, ConnectTimeout => 1, Timeout => 5);
    my $took = time - $t0;
    is($q, undef, 'a name the name server never answers: undef');
    like($@, qr/cannot resolve '\Q$hangs\E': timed out after 1 s/, '... and $@ says the lookup timed out');
    cmp_ok($took, '<', 1.5, sprintf('... within the ConnectTimeout of 1 s (%.2f s)', $took));
    cmp_ok($took, '>=', 0.9, '... not before it');
}

{
    my $t0 = time;
    $@ = '';
    my $q = Net::QMTP->new($hangs, ConnectTimeout => 5, TotalTimeout => 0.5);
    my $took = time - $t0;
    is($q, undef, 'TotalTimeout ends the lookup too');
    like($@, qr/call limit of 0\.5 s was reached/, '... and $@ says so, with the limit');
    cmp_ok($took, '<', 1.2, sprintf('... in time (%.2f s)', $took));
}

{
    my $ran_at;
    my $t0 = time;
    local $SIG{ALRM} = sub { $ran_at = time - $t0 };
    Time::HiRes::alarm(0.3);
    my $q = Net::QMTP->new($hangs, ConnectTimeout => 1);
    Time::HiRes::alarm(0);
    ok(defined $ran_at && $ran_at < 0.8,
       sprintf('a signal handler runs while the lookup waits (at %s s)',
               defined $ran_at ? sprintf('%.2f', $ran_at) : 'never'));
}

{
    my $t0 = time;
    my $q = eval {
        local $SIG{ALRM} = sub { die "alarm\n" };
        Time::HiRes::alarm(0.3);
        Net::QMTP->new($hangs, ConnectTimeout => 5);
    };
    my $err = $@;
    Time::HiRes::alarm(0);
    my $took = time - $t0;
    is($err, "alarm\n", 'a handler that dies ends the lookup');
    cmp_ok($took, '<', 1.5, sprintf('... at once, the object freed without waiting for the resolver (%.2f s)', $took));
}

# A forked child (a preforking daemon's worker) keeps the lookup timeout:
# the parent has looked a name up just before, so that any resolver state
# of the parent's is there in the child.
{
    pipe my $rd, my $wr or die "pipe: $!";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $rd;
        alarm 10;
        my $t0 = time;
        my $q = Net::QMTP->new($hangs, ConnectTimeout => 1);
        printf {$wr} "%s %.2f %s\n", defined $q ? 'connected' : 'undef', time - $t0, $@ =~ /timed out after 1 s/ ? 'timed-out' : 'other';
        close $wr;
        POSIX::_exit(0);
    }
    close $wr;
    my $line = <$rd> // 'nothing';
    waitpid $pid, 0;
    my ($what, $took, $why) = split ' ', $line;
    ok(defined $took && $what eq 'undef' && $why eq 'timed-out' && $took < 1.5,
        "a forked child's lookup ends at its ConnectTimeout too ($line)");
}

# Names the hosts file knows still resolve at once, and the client works.
{
    my $srv = Test::QMTPServer->new(sub {
        my ($conn) = @_;
        while ($conn->read_package) { $conn->answer_all('K', 'fine') }
    });
    my $t0 = time;
    my $q = Net::QMTP->new('localhost', Port => $srv->port, ConnectTimeout => 1, Timeout => 5);
    ok($q, 'localhost connects inside the namespaces') or diag $@;
    cmp_ok(time - $t0, '<', 1, '... at once');
    if ($q) {
        $q->sender('s');
        $q->recipient('r');
        $q->message('m');
        is_deeply($q->send, { r => 'success: fine' }, '... and sends');
    }
}

done_testing;
