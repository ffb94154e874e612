# The non-blocking send through Net::QMTP::Mojo, in Mojo::IOLoop's real
# loop: the cases every driver must pass (Test::AsyncCases), a loop of our
# own, and nothing left in the reactor afterwards.
use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;

BEGIN {
    if (!eval { require Mojo::IOLoop; 1 }) {
        if ($ENV{NET_QMTP_REQUIRE_LOOPS}) {
            plan tests => 1;
            fail('Mojolicious is required here (NET_QMTP_REQUIRE_LOOPS=1): apt-get install libmojolicious-perl');
            exit 0;
        }
        plan skip_all => 'Mojolicious is not installed (Debian: libmojolicious-perl)';
    }
}

use Net::QMTP;
use Net::QMTP::Mojo;
use Test::QMTPServer;
use Test::QMTPFaults qw(fd_count case serve_well);
use Test::AsyncCases;

$SIG{ALRM} = sub { die "timed out\n" };
my $reactor = Mojo::IOLoop->singleton->reactor;
note('reactor: ' . ref $reactor);

sub run_for {
    my (undef, $seconds) = @_;
    Mojo::IOLoop->timer($seconds => sub { Mojo::IOLoop->stop });
    Mojo::IOLoop->start;
}

# What the reactor watches, by its own count (Mojo::Reactor::Poll and
# ::EV keep handles under io, timers under timers).
sub watched { return (scalar keys %{ $reactor->{io} || {} }, scalar keys %{ $reactor->{timers} || {} }) }

run_async_cases(
    driver => sub {
        my ($q, @args) = @_;
        my $done;
        my $give_up = Mojo::IOLoop->timer(60 => sub { Mojo::IOLoop->stop });
        my $op = Net::QMTP::Mojo->send($q, @args, on_done => sub { $done = [@_]; Mojo::IOLoop->stop });
        Mojo::IOLoop->start unless $done;
        Mojo::IOLoop->remove($give_up);
        die "the send did not end within 60 s\n" unless $done;
        is_deeply([ watched() ], [ 0, 0 ], 'nothing is left in the reactor');
        return ($done, $op);
    },
    start        => sub { my ($q, @args) = @_; return Net::QMTP::Mojo->send($q, @args) },
    run_for      => \&run_for,
    has_watchers => 1,
);

case 'a loop of our own' => sub {
    my $srv = Test::QMTPServer->new(script => \&serve_well);
    my $loop = Mojo::IOLoop->new;
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1);
    my ($n, $done) = (0);
    Net::QMTP::Mojo->send($q, loop => $loop,
        jobs => [ map { { sender => 's@x', recipients => ['r@x'], message => "m $_\n" } } 1 .. 5 ],
        on_result => sub { $n++ if $_[0]{ok} }, on_done => sub { $done = 1; $loop->stop });
    $loop->start;
    ok($done && $n == 5, 'sent on the loop given');
    my $line;
    eval { $line = __LINE__; Net::QMTP::Mojo->send($q, loop => 'x', jobs => [], on_result => sub { }) };
    like($@, qr/\ANet::QMTP::Mojo->send: loop must be a Mojo::IOLoop at \Q$0\E line $line\.$/, 'a loop that is none');
};

case 'cancelled mid-send: nothing is left in the reactor' => sub {
    my $srv = Test::QMTPServer->new(script => sub { my ($c) = @_; $c->read_package; $c->sleep(5) });
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1);
    my $op = Net::QMTP::Mojo->send($q, jobs => [ { sender => 's@x', recipients => ['r@x'], message => "m\n" } ],
        on_result => sub { });
    run_for(undef, 0.3);
    my ($io) = watched();
    is($io, 1, 'one handle watched meanwhile');
    $op->cancel('enough');
    is_deeply([ watched() ], [ 0, 0 ], 'none after the cancel');
};

done_testing;
