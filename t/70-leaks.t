# No memory leak over many cycles: Perl values (Test::LeakTrace, from
# Debian's libtest-leaktrace-perl) and C memory (resident set size flat).
# Prints the figures.
use strict;
use warnings;
use Test::More;

use lib 't/lib';
use Test::Sink;
use Net::QMTP;

plan skip_all => 'needs /proc/self/status for memory figures' unless -r '/proc/self/status';
alarm 300;

sub rss_kb {
    open my $fh, '<', '/proc/self/status' or die $!;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    die 'no VmRSS';
}

my $sink = Test::Sink->start;
my $q = Net::QMTP->new('127.0.0.1', Port => $sink->port, Timeout => 10) or die $@;

sub cycle {
    $q->new_envelope;
    $q->new_message;
    $q->sender('sender@example.org');
    $q->recipient('a@example.org');
    $q->recipient('b@example.org');
    $q->message("Subject: leak test\n\n" . ('x' x 200));
    my $r = $q->send or die 'send failed: ' . $q->error;
    return $r;
}

cycle() for 1 .. 5000; # warm up: buffers reach their working size
my $before = rss_kb();
# Full size in CI (NET_QMTP_SOAK=1, about a minute); a tenth elsewhere.
my $scale = $ENV{NET_QMTP_SOAK} ? 1 : 10;
my $cycles = 100_000 / $scale;
cycle() for 1 .. $cycles;
my $after = rss_kb();
diag sprintf 'leak figures: %d send/new_envelope/new_message cycles: RSS %d kB -> %d kB (%+d kB)',
    $cycles, $before, $after, $after - $before;
# Under valgrind freed blocks wait in its queue before reuse, so RSS grows;
# there valgrind's own leak check covers C memory instead.
my $rss_meaningful = !$ENV{NET_QMTP_VALGRIND};
SKIP: {
    skip 'RSS is not meaningful under valgrind', 1 unless $rss_meaningful;
    cmp_ok($after - $before, '<', 1024, "RSS flat within 1 MiB over $cycles send cycles");
}

my $objects = 10_000 / $scale;
my $port = $sink->port;
for (1 .. 1000) { my $o = Net::QMTP->new('127.0.0.1', Port => $port) or die $@ }
$before = rss_kb();
for (1 .. $objects) {
    my $o = Net::QMTP->new('127.0.0.1', Port => $port, Timeout => 5) or die $@;
    $o->sender('s');
    $o->recipient('r');
}
$after = rss_kb();
diag sprintf 'leak figures: %d connected objects created and destroyed: RSS %d kB -> %d kB (%+d kB)',
    $objects, $before, $after, $after - $before;
SKIP: {
    skip 'RSS is not meaningful under valgrind', 1 unless $rss_meaningful;
    cmp_ok($after - $before, '<', 1024, "RSS flat within 1 MiB over $objects object creations");
}

my $fds = () = glob('/proc/self/fd/*');
undef $q;
my $fds_after = () = glob('/proc/self/fd/*');
is($fds_after, $fds - 1, 'destroying the last object closed its descriptor, and no other is left open');

SKIP: {
    my $have = eval { require Test::LeakTrace; Test::LeakTrace->import; 1 };
    if (!$have) {
        fail('Test::LeakTrace is required in CI (NET_QMTP_SOAK is set)') if $ENV{NET_QMTP_SOAK};
        skip 'Test::LeakTrace not installed (Debian: libtest-leaktrace-perl)', 3;
    }
    my $o = Net::QMTP->new('127.0.0.1', Port => $port) or die $@;
    $o->sender('s');
    $o->recipient('r');
    $o->message('m');
    $o->send for 1 .. 10;
    # Each block runs once before it is measured: Carp and perl fill
    # one-time caches on first use.
    my $count = sub { my $code = shift; $code->(); Test::LeakTrace::leaked_count($code) };
    my $leaked = $count->(sub { for (1 .. 1000) { $o->send or die; $o->responses } });
    diag "leak figures: Test::LeakTrace: $leaked SVs leaked over 1000 sends";
    is($leaked, 0, 'no SV leaked by send() and responses()');
    $leaked = $count->(sub {
        for (1 .. 200) {
            my $n = Net::QMTP->new('127.0.0.1', Port => $port) or die;
            $n->sender('s'); $n->recipient('r'); $n->message('m'); $n->send; $n->disconnect;
        }
    });
    diag "leak figures: Test::LeakTrace: $leaked SVs leaked over 200 object lifecycles";
    is($leaked, 0, 'no SV leaked by new/send/disconnect/DESTROY');
    $leaked = $count->(sub {
        for (1 .. 200) {
            my $n = Net::QMTP->new('127.0.0.1', Port => 1, DeferConnect => 1);
            $n->reconnect;
            eval { $n->sender("\x{263a}") };
            eval { $n->encoding('mac') };
            $n->send;
        }
    });
    diag "leak figures: Test::LeakTrace: $leaked SVs leaked over 200 failing calls";
    is($leaked, 0, 'no SV leaked on failure paths and croaks');
}

done_testing;
