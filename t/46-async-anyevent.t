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

case 'ten servers at once, one of them slow' => sub {
    my @srv = map {
        my $slow = $_ == 0;
        Test::QMTPServer->new(script => sub {
            my ($c) = @_;
            while ($c->read_package) { $c->sleep(1) if $slow; $c->answer_all('K', 'ok') or last }
        });
    } 0 .. 9;
    my @q = map { Net::QMTP->new('127.0.0.1', Port => $_->port, DeferConnect => 1) } @srv;
    my $cv = AnyEvent->condvar;
    my %ok;
    my $t0 = AnyEvent->time;
    for my $k (0 .. $#q) {
        $cv->begin;
        Net::QMTP::AnyEvent->send($q[$k],
            jobs => [ map { { sender => 's@x', recipients => ["r$_\@x"], message => "m $_\n" } } 1 .. 2 ],
            window => 1,
            on_result => sub { $ok{$k}++ if $_[0]{ok} },
            on_done => sub { $cv->end });
    }
    $cv->recv;
    my $took = AnyEvent->time - $t0;
    is(scalar(grep { $ok{$_} == 2 } 0 .. 9), 10, 'every server got both jobs');
    cmp_ok($took, '<', 3 * $SLOW, sprintf('the whole took about the slow server\'s 2 s, not more (%.2f s)', $took));
};

done_testing;
