# The non-blocking send through Net::QMTP::IOAsync, in IO::Async's real
# loop: the cases every driver must pass (Test::AsyncCases), driven through
# send_future; then what only the Future shows (its values, cancelling it,
# the errors of its arguments), many sends at once on one loop, and
# nothing left in the loop afterwards.
use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;

BEGIN {
    if (!eval { require IO::Async::Loop; require Future; 1 }) {
        if ($ENV{NET_QMTP_REQUIRE_LOOPS}) {
            plan tests => 1;
            fail('IO::Async and Future are required here (NET_QMTP_REQUIRE_LOOPS=1): apt-get install libio-async-perl libfuture-perl');
            exit 0;
        }
        plan skip_all => 'IO::Async or Future is not installed (Debian: libio-async-perl, libfuture-perl)';
    }
}

use Scalar::Util ();
use Time::HiRes ();
use Net::QMTP;
use Net::QMTP::IOAsync;
use Test::QMTPServer;
use Test::QMTPFaults qw(fd_count case serve_well);
use Test::AsyncCases;

$SIG{ALRM} = sub { die "timed out\n" };
my $loop = IO::Async::Loop->new;
note('loop: ' . ref $loop);

sub run_for {
    my (undef, $seconds) = @_;
    $loop->delay_future(after => $seconds)->get;
}

# What the loop watches, by its own count (IO::Async::Loop keeps handles
# under iowatches, timers in its timequeue: an array, or a heap with
# Heap::Fibonacci, where only whether one is left can be told).
sub watched {
    my $tq = $loop->{timequeue};
    my $timers = !$tq ? 0
        : Scalar::Util::reftype($tq) eq 'ARRAY' ? scalar @$tq
        : defined $tq->next_time ? 1 : 0;
    return (scalar keys %{ $loop->{iowatches} || {} }, $timers);
}

sub jobs {
    my ($n, $tag) = @_;
    $tag = 'm' unless defined $tag;
    return [ map { { sender => 's@x', recipients => ["r$_\@x"], message => "$tag $_\n" } } 0 .. $n - 1 ];
}

run_async_cases(
    driver => sub {
        my ($q, @args) = @_;
        my %args = @args;
        my $theirs = $args{on_result};
        my (@mine, @done);
        my $f = Net::QMTP::IOAsync->send_future($loop, $q, %args,
            on_result => sub { $mine[ $_[1] ] = $_[0]; $theirs->(@_) },
            on_done   => sub { @done = @_ });
        my $give_up = $loop->delay_future(after => 60)->on_done(sub { $f->cancel });
        $loop->await($f);
        $give_up->cancel;
        die "the send did not end within 60 s\n" if $f->is_cancelled;
        my ($count, $error, $results) = $f->get;
        is_deeply([ $count, $error ], \@done, "the Future's count and error are on_done's");
        is_deeply($results, \@mine, "the Future's results are on_result's, in order");
        is_deeply([ watched() ], [ 0, 0 ], 'nothing is left in the loop');
        return (\@done, undef);
    },
    start        => sub { my ($q, @args) = @_; return Net::QMTP::IOAsync->send($loop, $q, @args) },
    run_for      => \&run_for,
    has_watchers => 1,
);

case 'the Future: count, error and results, in order' => sub {
    # Every second job is refused: the Future is done all the same.
    my $srv = Test::QMTPServer->new(script => sub {
        my ($c) = @_;
        my $n = 0;
        while ($c->read_package) { $c->answer_all($n++ % 2 ? 'D' : 'K', "job $n") or last }
    });
    my $fds = fd_count();
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1);
    my @seen;
    my $f = Net::QMTP::IOAsync->send_future($loop, $q, jobs => jobs(6), window => 4,
        on_result => sub { push @seen, "result $_[1]" }, on_done => sub { push @seen, 'on_done' });
    isa_ok($f, 'Future');
    $f->on_ready(sub { push @seen, 'future' });
    my ($count, $error, $results) = $f->get;
    ok($f->is_done, 'done, not failed, though jobs were refused');
    is($count, 6, 'the count');
    is($error, undef, 'no error');
    is(scalar @$results, 6, 'a result for each job');
    is_deeply([ map { $_->{job}{message} } @$results ], [ map { "m $_\n" } 0 .. 5 ], 'in the order of the jobs');
    is_deeply([ map { $_->{ok} ? 1 : 0 } @$results ], [ 1, 0, 1, 0, 1, 0 ], 'each one saying what became of its job');
    like($results->[1]{responses}[0]{text}, qr/job 2/, "the server's answer");
    is_deeply(\@seen, [ (map { "result $_" } 0 .. 5), 'on_done', 'future' ], "the caller's callbacks first, then the Future");
    $f->cancel;
    ok($f->is_done && !$f->is_cancelled, 'a Future done stays done');
    is_deeply([ watched() ], [ 0, 0 ], 'nothing is left in the loop');
    undef $q;
    is(fd_count(), $fds, 'no descriptor left');
};

case 'cancelling the Future cancels the send' => sub {
    my $srv = Test::QMTPServer->new(script => sub { my ($c) = @_; $c->read_package; $c->sleep(5 * $SLOW) });
    my $fds = fd_count();
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1, Timeout => 10 * $SLOW);
    my (@results, @done);
    my $t0 = Time::HiRes::time();
    my $f = Net::QMTP::IOAsync->send_future($loop, $q, jobs => jobs(3),
        on_result => sub { $results[ $_[1] ] = $_[0] }, on_done => sub { @done = @_ });
    my $op = $q->{QMTP_ASYNC}; # the send's op, as the object keeps it while it runs
    run_for(undef, 0.5 * $SLOW);
    ok($op && $op->pending && !$f->is_ready, 'under way, the server silent');
    my $watchers = Test::AsyncCases::watchers_of($op);
    ok(keys %$watchers, 'the adapter watches meanwhile');
    is_deeply([ watched() ], [ 1, 1 ], 'a handle and a timer in the loop');
    $f->cancel;
    ok($f->is_cancelled, 'the Future is cancelled');
    ok(!$op->pending && !$q->async_pending, 'the send is over');
    cmp_ok(Time::HiRes::time() - $t0, '<', 3 * $SLOW, 'at once, not at the Timeout');
    is($done[0], 3, 'every job taken is reported');
    is($done[1], 'cancelled: the Future was cancelled', 'on_done says why');
    is($q->error, 'cancelled: the Future was cancelled', 'so does error()');
    is(scalar(grep { !$_->{ok} && ($_->{responses}[0]{text} // $_->{error} // '') =~ /cancelled: the Future was cancelled/ } @results),
        3, 'each job: not a success, saying why');
    ok(!grep({ defined } values %$watchers), 'no watcher is left');
    is_deeply([ watched() ], [ 0, 0 ], 'nothing is left in the loop');
    my $r = $q->send_many(jobs(1));
    ok($r && $r->[0]{result}, 'the object is usable afterwards (a new connection)');
    undef $q;
    is(fd_count(), $fds, 'no descriptor left');
};

case 'the object destroyed mid-send: the Future says so' => sub {
    my $srv = Test::QMTPServer->new(script => sub { my ($c) = @_; $c->read_package; $c->sleep(5) });
    my $fds = fd_count();
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1, Timeout => 10);
    my $f = Net::QMTP::IOAsync->send_future($loop, $q, jobs => jobs(3));
    run_for(undef, 0.3);
    ok(!$f->is_ready, 'under way');
    undef $q;
    ok($f->is_done, 'done at once');
    my ($count, $error, $results) = $f->get;
    is($count, 3, 'every job reported');
    like($error, qr/destroyed/, '... the error saying the object was destroyed');
    ok(@$results == 3 && !grep({ $_->{ok} } @$results), 'no job is a success');
    is_deeply([ watched() ], [ 0, 0 ], 'nothing is left in the loop');
    is(fd_count(), $fds, 'no descriptor left');
};

case 'bad arguments die at the caller' => sub {
    my $srv = Test::QMTPServer->new(script => \&serve_well);
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1);
    my $job = jobs(1);
    my $line;
    for my $m (qw(send send_future)) {
        eval { $line = __LINE__; Net::QMTP::IOAsync->$m('x', $q, jobs => $job, on_result => sub { }) };
        like($@, qr/\ANet::QMTP::IOAsync->$m: needs an IO::Async::Loop at \Q$0\E line $line\.$/, "$m: a loop that is none");
        eval { $line = __LINE__; Net::QMTP::IOAsync->$m(bless({}, 'Some::Loop'), $q, jobs => $job, on_result => sub { }) };
        like($@, qr/\ANet::QMTP::IOAsync->$m: needs an IO::Async::Loop at \Q$0\E line $line\.$/, "$m: another kind of object");
        eval { $line = __LINE__; Net::QMTP::IOAsync->$m($loop, 'x', jobs => $job, on_result => sub { }) };
        like($@, qr/\ANet::QMTP::IOAsync->$m: needs a Net::QMTP object at \Q$0\E line $line\.$/, "$m: no Net::QMTP object");
        eval { $line = __LINE__; Net::QMTP::IOAsync->$m($loop, $q, jobs => $job, on_result => sub { }, bogus => 1) };
        like($@, qr/\Asend_async: unknown option 'bogus' at \Q$0\E line $line\.$/, "$m: an unknown option");
        eval { $line = __LINE__; Net::QMTP::IOAsync->$m($loop, $q, jobs => $job, on_result => sub { }, 'odd') };
        like($@, qr/\Asend_async: options must be NAME => VALUE pairs at \Q$0\E line $line\.$/, "$m: options that are no pairs");
        eval { $line = __LINE__; Net::QMTP::IOAsync->$m($loop, $q, jobs => $job, on_result => 'x') };
        like($@, qr/\Asend_async: on_result must be a code reference at \Q$0\E line $line\.$/, "$m: on_result not code");
        eval { $line = __LINE__; Net::QMTP::IOAsync->$m($loop, $q, jobs => $job, on_result => sub { }, on_done => 'x') };
        like($@, qr/\Asend_async: on_done must be a code reference at \Q$0\E line $line\.$/, "$m: on_done not code");
        eval { $line = __LINE__; Net::QMTP::IOAsync->$m($loop, $q, jobs => [ { sender => 's@x', message => "m\n" } ], on_result => sub { }) };
        like($@, qr/\Asend_async: job 1: recipients must be a non-empty array reference at \Q$0\E line $line\.$/, "$m: a first job that is no job");
        ok(!$q->async_pending, "$m: nothing was started");
        is_deeply([ watched() ], [ 0, 0 ], "$m: nothing is in the loop");
    }
    eval { $line = __LINE__; Net::QMTP::IOAsync->send($loop, $q, jobs => $job) };
    like($@, qr/\Asend_async: on_result must be a code reference at \Q$0\E line $line\.$/, 'send: no on_result');

    # on_result is send_future's to supply; a second send on the object
    # while one runs is refused, and the first goes on.
    my $f = Net::QMTP::IOAsync->send_future($loop, $q, jobs => jobs(2));
    for my $m (qw(send send_future)) {
        eval { $line = __LINE__; Net::QMTP::IOAsync->$m($loop, $q, jobs => $job, on_result => sub { }) };
        like($@, qr/\Asend_async: a non-blocking send is under way on this object already at \Q$0\E line $line\.$/,
            "$m: one send at a time");
    }
    my ($count, $error, $results) = $f->get;
    ok($count == 2 && !defined $error && 2 == grep({ $_->{ok} } @$results), 'the send under way went on to its end');
    is_deeply([ watched() ], [ 0, 0 ], 'nothing is left in the loop');
};

# One process, 10 servers at once, two of them slow (a second per
# answer): the whole takes about the slow servers' time, not the sum.
case '10 servers at once, two of them slow' => sub {
    my $slow_s = 1;
    my @srv = map {
        my $slow = $_ % 5 == 0;
        Test::QMTPServer->new(script => sub {
            my ($c) = @_;
            while ($c->read_package) { $c->sleep($slow_s) if $slow; $c->answer_all('K', 'ok') or last }
        });
    } 0 .. 9;
    my $fds = fd_count();
    my @q = map { Net::QMTP->new('127.0.0.1', Port => $_->port, DeferConnect => 1) } @srv;
    my $t0 = Time::HiRes::time();
    my @f = map { Net::QMTP::IOAsync->send_future($loop, $q[$_], jobs => jobs(2, "server $_, job"), window => 1) } 0 .. $#q;
    my $give_up = $loop->delay_future(after => 60)->on_done(sub { $_->cancel for @f });
    $loop->await_all(@f);
    $give_up->cancel;
    my $took = Time::HiRes::time() - $t0;
    my $good = grep {
        my $k = $_;
        my ($count, $error, $results) = $f[$k]->is_done ? $f[$k]->get : ();
        $count && $count == 2 && !defined $error
            && 2 == grep({ $_->{ok} } @$results)
            && join('', map { $_->{job}{message} } @$results) eq "server $k, job 0\nserver $k, job 1\n";
    } 0 .. $#f;
    is($good, 10, 'every server got both jobs, in order');
    cmp_ok($took, '<', (2 * $slow_s + 1.5) * $SLOW,
        sprintf('the whole took about the slow servers\' %d s, not the %d s of one after another (%.2f s)',
            2 * $slow_s, 4 * $slow_s, $took));
    is_deeply([ watched() ], [ 0, 0 ], 'nothing is left in the loop');
    undef @q;
    is(fd_count(), $fds, 'no descriptor left');
};

done_testing;
