# The adapters whose loops watch Perl handles (Mojo, IO::Async) watch a
# duplicate of the engine's descriptor. A process out of descriptors
# cannot make one: the send must end then, saying why, never stay under
# way unwatched (it would wait for ever, and the object would refuse its
# next send). Each case runs in a child whose descriptor limit is low and
# filled up to one, which the connection takes.
use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::QMTPServer;
use Test::QMTPFaults qw(case serve_well);

my %loop = (
    'Net::QMTP::Mojo'    => { needs => 'Mojo::IOLoop', debian => 'libmojolicious-perl' },
    'Net::QMTP::IOAsync' => { needs => 'IO::Async::Loop', debian => 'libio-async-perl libfuture-perl' },
);

# The child: fills its descriptors, starts one send, runs its loop for
# at most 10 s, and says how the send ended.
my $child = <<'EOT';
use strict;
use warnings;
use Net::QMTP;
my ($adapter, $port) = @ARGV;
eval "require $adapter; 1" or die $@;
my ($run, $stop);
my $loop;
if ($adapter eq 'Net::QMTP::Mojo') {
    require Mojo::IOLoop;
    my $t = Mojo::IOLoop->timer(10 => sub { Mojo::IOLoop->stop });
    $run = sub { Mojo::IOLoop->start };
    $stop = sub { Mojo::IOLoop->stop };
    Mojo::IOLoop->singleton->reactor->one_tick; # the reactor's own descriptors, if any, now
} else {
    require IO::Async::Loop;
    $loop = IO::Async::Loop->new;
    $loop->watch_time(after => 10, code => sub { $loop->stop });
    $run = sub { $loop->run };
    $stop = sub { $loop->stop };
}
my $q = Net::QMTP->new('127.0.0.1', Port => $port, DeferConnect => 1, Timeout => 5);
my @spare;
while (open my $fh, '<', '/dev/null') { push @spare, $fh }
close pop @spare; # one left: the connection's
my @done;
my @job = (jobs => [ { sender => 's@x', recipients => ['r@x'], message => "hi\n" } ],
    on_result => sub { }, on_done => sub { @done = @_; $stop->() });
my $op = $loop ? $adapter->send($loop, $q, @job) : $adapter->send($q, @job);
$run->() if !@done;
@spare = ();
my $again = eval { $q->send_many({ sender => 's@x', recipients => ['r@x'], message => "again\n" }) };
printf "done %s; pending %d; next %s\n", @done ? "$done[0] ($done[1])" : 'never',
    $op->pending ? 1 : 0, $again && $again->[0]{result} ? 'sent' : 'not sent: ' . ($q->error // $@);
EOT

for my $adapter (sort keys %loop) {
    case "$adapter: out of descriptors" => sub {
        if (!eval "require $loop{$adapter}{needs}; 1") {
            return fail("$loop{$adapter}{needs} is required here (NET_QMTP_REQUIRE_LOOPS=1): apt-get install $loop{$adapter}{debian}")
                if $ENV{NET_QMTP_REQUIRE_LOOPS};
            return pass("$loop{$adapter}{needs} is not installed: nothing to check");
        }
        my $srv = Test::QMTPServer->new(script => \&serve_well);
        my @inc = map { "-I$_" } grep { !ref } @INC;
        my $pid = open my $out, '-|';
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            open STDERR, '>&', \*STDOUT;
            exec '/bin/sh', '-c', 'ulimit -n 64 && exec "$@"', 'sh', $^X, @inc, '-e', $child, $adapter, $srv->port
                or POSIX::_exit(127);
        }
        my $said = do { local $/; <$out> };
        close $out;
        like($said, qr/^done 1 \(Net::QMTP::\w+: cannot duplicate descriptor \d+: Too many open files\)/m,
            'the send ended at once, every job reported, saying why') or diag $said;
        like($said, qr/; pending 0;/, 'nothing is under way afterwards');
        like($said, qr/; next sent$/m, 'the object sends again once descriptors are free');
    };
}

done_testing;
