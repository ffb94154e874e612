# The non-blocking send through Net::QMTP::AnyEvent, in AnyEvent's real
# loop (EV where installed, else AnyEvent's own): the cases every driver
# must pass (Test::AsyncCases), and many sends at once on one loop.
use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;

BEGIN {
    if (!eval { require AnyEvent; 1 }) {
        if ($ENV{NET_QMTP_REQUIRE_LOOPS}) {
            plan tests => 1;
            fail('AnyEvent is required here (NET_QMTP_REQUIRE_LOOPS=1): apt-get install libanyevent-perl');
            exit 0;
        }
        plan skip_all => 'AnyEvent is not installed (Debian: libanyevent-perl)';
    }
}

use Net::QMTP;
use Net::QMTP::AnyEvent;
use Test::QMTPServer;
use Test::QMTPFaults qw(fd_count case serve_well);
use Test::AsyncCases;

$SIG{ALRM} = sub { die "timed out\n" };
AnyEvent::detect();
note("AnyEvent model: $AnyEvent::MODEL");

sub run_for {
    my (undef, $seconds) = @_;
    my $cv = AnyEvent->condvar;
    my $t = AnyEvent->timer(after => $seconds, cb => sub { $cv->send });
    $cv->recv;
}

run_async_cases(
    driver => sub {
        my ($q, @args) = @_;
        my $cv = AnyEvent->condvar;
        my $give_up = AnyEvent->timer(after => 60, cb => sub { $cv->croak("the send did not end within 60 s\n") });
        my $op = Net::QMTP::AnyEvent->send($q, @args, on_done => sub { $cv->send([@_]) });
        return ($cv->recv, $op);
    },
    start        => sub { my ($q, @args) = @_; return Net::QMTP::AnyEvent->send($q, @args) },
    run_for      => \&run_for,
    has_watchers => 1,
);

# One process, 50 servers at once, five of them slow (a second per
# answer): the whole takes about the slow servers' time, not the sum.
case '50 servers at once, five of them slow' => sub {
    my $slow_s = 1;
    my @srv = map {
        my $slow = $_ % 10 == 0;
        Test::QMTPServer->new(script => sub {
            my ($c) = @_;
            while ($c->read_package) { $c->sleep($slow_s) if $slow; $c->answer_all('K', 'ok') or last }
        });
    } 0 .. 49;
    my $fds = fd_count();
    my @q = map { Net::QMTP->new('127.0.0.1', Port => $_->port, DeferConnect => 1) } @srv;
    my $cv = AnyEvent->condvar;
    my (%ok, %order_ok);
    my $t0 = AnyEvent->time;
    for my $k (0 .. $#q) {
        $cv->begin;
        my $next = 0;
        Net::QMTP::AnyEvent->send($q[$k],
            jobs => [ map { { sender => 's@x', recipients => ["r$_\@x"], message => "server $k, job $_\n" } } 0 .. 1 ],
            window => 1,
            on_result => sub { my ($r, $i) = @_; $ok{$k}++ if $r->{ok}; $order_ok{$k}++ if $i == $next++ },
            on_done => sub { $cv->end });
    }
    $cv->recv;
    my $took = AnyEvent->time - $t0;
    is(scalar(grep { ($ok{$_} || 0) == 2 && $order_ok{$_} == 2 } 0 .. 49), 50, 'every server got both jobs, in order');
    cmp_ok($took, '<', (2 * $slow_s + 1.5) * $SLOW,
        sprintf('the whole took about the slow servers\' %d s, not the %d s of one after another (%.2f s)',
            2 * $slow_s, 10 * $slow_s, $took));
    undef @q;
    is(fd_count(), $fds, 'no descriptor left');
};

done_testing;
