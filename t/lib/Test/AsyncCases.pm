package Test::AsyncCases;

# The cases every way of driving send_async must pass (t/45 with a plain
# poll loop, t/46 with AnyEvent, t/47 with Mojo::IOLoop, t/48 with
# IO::Async): each scripted
# server case is run twice, once through the blocking send_stream and once
# through the driver, against two servers running the same script, and
# the results, their order, the count and error() must be the same. Then
# the cases only the non-blocking path has: cancelling, destroying the
# object mid-send, no descriptor or watcher left behind.
#
# The caller gives three ways into its loop: driver, sub { my ($q,
# @send_async_args) = @_ } that runs a send to its end and returns
# (\@on_done_args, $op); start, which only starts one (returning the op);
# and run_for, sub { my ($q, $seconds) = @_ }, which runs the loop that long.

use strict;
use warnings;

use Exporter 'import';
use Test::More;
use Time::HiRes ();
use Scalar::Util ();

use Net::QMTP;
use Test::QMTPServer;
use Test::QMTPFaults qw(fd_count case serve_well);

our @EXPORT = qw(run_async_cases poll_driver poll_for $SLOW);

# Time limits stretch under valgrind (.ci/valgrind), which slows both ends.
our $SLOW = $ENV{NET_QMTP_VALGRIND} ? 5 : 1;

my $SENDER = 'sender@example.org';

sub jobs {
    my ($n, %o) = @_;
    my $size = $o{size} || 40;
    my $rcpts = $o{rcpts} || 1;
    return [ map {
        my $i = $_;
        { sender => $SENDER, recipients => [ map { "r$i-$_\@example.net" } 1 .. $rcpts ],
          message => sprintf("%-*s\n", $size - 1, "message $i") }
    } 1 .. $n ];
}

# The plain loop the manual documents: select(2) on what async_wants says.
sub poll_driver {
    my ($q, @args) = @_;
    my @done;
    my $op = $q->send_async(@args, on_done => sub { @done = @_ });
    my $give_up = Time::HiRes::time() + 60;
    while (my ($fd, $read, $write, $after) = $q->async_wants) {
        die "poll driver: the send did not end within 60 s\n" if Time::HiRes::time() > $give_up;
        my ($rin, $win) = ('', '');
        if (defined $fd) {
            vec($rin, $fd, 1) = 1 if $read;
            vec($win, $fd, 1) = 1 if $write;
        }
        my $n = select(my $rout = $rin, my $wout = $win, undef, $after);
        my ($r, $w) = $n && $n > 0 ? (vec($rout, $fd, 1), vec($wout, $fd, 1)) : (0, 0);
        $q->async_ready($r, $w);
    }
    return (\@done, $op);
}

# Weak references to what an adapter keeps for the send (see watch): they
# must all be gone once it ends.
sub watchers_of {
    my ($op) = @_;
    my $watch = $op->watch;
    my %w = map { $_ => $watch->{$_} } grep { ref $watch->{$_} } keys %$watch;
    Scalar::Util::weaken($w{$_}) for keys %w;
    return \%w; # a copy of a weak reference would be a strong one
}

# Runs the plain loop for a while, for the sends started meanwhile.
sub poll_for {
    my ($q, $seconds) = @_;
    my $until = Time::HiRes::time() + $seconds;
    while ((my $left = $until - Time::HiRes::time()) > 0) {
        my ($fd, $read, $write, $after) = $q ? $q->async_wants : () or last;
        $after = $left if $after > $left;
        my ($rin, $win) = ('', '');
        if (defined $fd) {
            vec($rin, $fd, 1) = 1 if $read;
            vec($win, $fd, 1) = 1 if $write;
        }
        my $n = select(my $rout = $rin, my $wout = $win, undef, $after);
        $q->async_ready($n && $n > 0 ? (vec($rout, $fd, 1), vec($wout, $fd, 1)) : (0, 0));
    }
    Time::HiRes::sleep($until - Time::HiRes::time()) if $until > Time::HiRes::time();
    return;
}

sub normalised {
    my ($results) = @_;
    my @out;
    for my $r (@$results) {
        my %copy = %$r;
        delete $copy{job};
        push @out, _no_ports(\%copy);
    }
    return \@out;
}

sub _no_ports {
    my ($v) = @_;
    if (ref $v eq 'HASH') { return { map { $_ => _no_ports($v->{$_}) } keys %$v } }
    if (ref $v eq 'ARRAY') { return [ map { _no_ports($_) } @$v ] }
    return $v unless defined $v;
    (my $s = $v) =~ s/port \d+/port N/g;
    return $s;
}

# One case both ways: the blocking send_stream and the driver, each with
# its own server running script. Returns the driver's results.
sub same_both_ways {
    my ($driver, $name, %c) = @_;
    my %new = (Timeout => 5, %{ $c{new} || {} });
    my %stream = (window => $c{window} || 256, ($c{window_bytes} ? (window_bytes => $c{window_bytes}) : ()),
        ($c{lean} ? (lean => 1) : ()));
    my (%got, %count, %error, %took);
    for my $how (qw(blocking driver)) {
        my $srv = Test::QMTPServer->new(script => $c{script}, ($c{rcvbuf} ? (rcvbuf => $c{rcvbuf}) : ()));
        my $fds = fd_count();
        my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, %new, ($how eq 'driver' ? (DeferConnect => 1) : ()))
            or die "new: $@";
        $c{before}->($q, $srv, $how) if $c{before};
        my @results;
        my $on_result = sub { my ($r, $i) = @_; $results[$i] = $r };
        my $t0 = Time::HiRes::time();
        if ($how eq 'blocking') {
            $count{$how} = $q->send_stream(jobs => $c{jobs}, on_result => $on_result, %stream);
        } else {
            my ($done) = $driver->($q, jobs => $c{jobs}, on_result => $on_result, %stream);
            $count{$how} = $done->[0];
            is($done->[1], $q->error, "$name: on_done's error is error()");
        }
        $took{$how} = Time::HiRes::time() - $t0;
        $error{$how} = _no_ports($q->error);
        $got{$how} = normalised(\@results);
        undef $q;
        is(fd_count(), $fds, "$name ($how): no descriptor left once the object is gone");
    }
    is($count{driver}, $count{blocking}, "$name: as many jobs taken ($count{blocking})");
    is($error{driver}, $error{blocking}, "$name: the same error()");
    is_deeply($got{driver}, $got{blocking}, "$name: the same results, in the same order")
        or diag explain { blocking => $got{blocking}[0], driver => $got{driver}[0] };
    $c{check}->($got{driver}, $error{driver}, $took{driver}) if $c{check};
    return $got{driver};
}

sub run_async_cases {
    my (%opt) = @_;
    my $driver = $opt{driver};

    case 'all accepted, in windows' => sub {
        same_both_ways($driver, 'accepted', jobs => jobs(40), window => 8, script => \&serve_well,
            check => sub {
                my ($got) = @_;
                is(scalar(grep { $_->{ok} } @$got), 40, 'every job accepted');
            });
    };

    case 'several recipients, answered once each' => sub {
        same_both_ways($driver, 'per recipient', jobs => jobs(12, rcpts => 3), window => 5, script => \&serve_well,
            check => sub { is(scalar(grep { $_->{ok} } @{ $_[0] }), 12, 'every job accepted') });
    };

    case 'declared once per package' => sub {
        same_both_ways($driver, 'per package', jobs => jobs(12, rcpts => 3), new => { Answers => 'package' },
            script => sub {
                my ($c) = @_;
                while ($c->read_package) { $c->respond('Kqueued') or last }
            },
            check => sub { is(scalar(grep { $_->{ok} } @{ $_[0] }), 12, 'every job accepted') });
    };

    case 'the lean form' => sub {
        same_both_ways($driver, 'lean', jobs => jobs(20), lean => 1, script => \&serve_well);
    };

    case 'the server closes after 3 of 10 answers' => sub {
        same_both_ways($driver, 'close at 3', jobs => jobs(10), script => sub {
            my ($c, $n) = @_;
            return serve_well($c) if $n > 0;
            for (1 .. 3) { $c->read_package or return; $c->answer_all('K', 'ok') or return }
            $c->close;
        }, check => sub {
            my ($got) = @_;
            is(scalar(grep { $_->{ok} } @$got), 3, 'three accepted');
            ok(!grep({ $_->{ok} } @$got[3 .. 9]), 'none after them is a success');
        });
    };

    case 'garbage instead of an answer' => sub {
        same_both_ways($driver, 'garbage', jobs => jobs(5), script => sub {
            my ($c, $n) = @_;
            return serve_well($c) if $n > 0;
            $c->read_package or return;
            $c->write('hello, this is not a netstring');
            $c->sleep(2);
        }, check => sub {
            my ($got) = @_;
            ok(!grep({ $_->{ok} } @$got), 'no success');
            like($got->[0]{responses}[0]{text} // $got->[0]{error} // '', qr/protocol violation/, 'a protocol violation, said');
        });
    };

    case 'a stall past Timeout' => sub {
        same_both_ways($driver, 'stall', jobs => jobs(6), new => { Timeout => 1 }, script => sub {
            my ($c) = @_;
            $c->read_package;
            $c->sleep(4);
        }, check => sub {
            my ($got, $error, $took) = @_;
            ok(!grep({ $_->{ok} } @$got), 'no success');
            like($error, qr/timed out/, 'error() says it timed out');
            cmp_ok($took, '<', 3.5 * $SLOW, 'the driver waited about the Timeout, no longer');
        });
    };

    case 'the server closed the connection while it was idle' => sub {
        same_both_ways($driver, 'idle close', jobs => jobs(4), script => sub {
            my ($c, $n) = @_;
            return serve_well($c) if $n > 0;
            $c->close;
        }, before => sub {
            my ($q, $srv, $how) = @_;
            # The driver's object connects as the blocking one did in new().
            $q->reconnect if $how eq 'driver';
            $srv->wait_done(0, 10);
            Time::HiRes::sleep(0.05);
        }, check => sub { is(scalar(grep { $_->{ok} } @{ $_[0] }), 4, 'sent again on a new connection, accepted') });
    };

    case 'pipelined past the socket buffers' => sub {
        same_both_ways($driver, 'big batch', jobs => jobs(40, size => 256 * 1024), window => 40,
            window_bytes => 64 * 1024 * 1024, rcvbuf => 4096, new => { Answers => 'recipient' },
            script => \&serve_well,
            check => sub {
                my ($got, $error, $took) = @_;
                is(scalar(grep { $_->{ok} } @$got), 40, 'all 40 (10 MiB) accepted: no deadlock');
            });
    };

    case 'a refused connection' => sub {
        my $srv = Test::QMTPServer->new(script => sub { });
        my $port = $srv->port;
        $srv->stop;
        my $fds = fd_count();
        my $q = Net::QMTP->new('127.0.0.1', Port => $port, DeferConnect => 1, ConnectTimeout => 2);
        my @results;
        my ($done) = $driver->($q, jobs => jobs(3), on_result => sub { $results[ $_[1] ] = $_[0] });
        is($done->[0], 3, 'every job is reported');
        like($q->error, qr/\Anot sent: cannot connect to 127\.0\.0\.1 .*refused/, 'error() says the connection was refused');
        is(scalar(grep { !$_->{ok} && $_->{error} =~ /\Anot sent: cannot connect/ } @results), 3, 'each job: not sent, and why');
        undef $q;
        is(fd_count(), $fds, 'no descriptor left');
    };

    case 'cancelled mid-send' => sub {
        my $srv = Test::QMTPServer->new(script => sub { my ($c) = @_; $c->read_package; $c->answer_all('K', 'first'); $c->sleep(5 * $SLOW) });
        my $fds = fd_count();
        my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1, Timeout => 10 * $SLOW);
        my (@results, @done);
        my $t0 = Time::HiRes::time();
        my $op = $opt{start}->($q, jobs => jobs(5), window => 5, on_result => sub { $results[ $_[1] ] = $_[0] },
            on_done => sub { @done = @_ });
        # Time for the first answer to come in (a run's results are handed
        # out at its end): longer under valgrind, which slows both ends.
        $opt{run_for}->($q, 0.5 * $SLOW);
        ok($op->pending, 'under way, the server silent');
        my $watchers = watchers_of($op);
        ok(!$opt{has_watchers} || keys %$watchers, 'the adapter watches meanwhile');
        ok($op->cancel('cancelled by the test'), 'cancel');
        my $took = Time::HiRes::time() - $t0;
        is($done[0], 5, 'every job taken is reported');
        is($done[1], 'cancelled by the test', 'on_done says why');
        is($q->error, 'cancelled by the test', 'so does error()');
        ok($results[0]{ok}, 'the answer that came is kept');
        ok(!grep({ $_->{ok} } @results[1 .. 4]), 'the others are not successes');
        like($results[1]{responses}[0]{text}, qr/cancelled by the test/, 'their deferral says why');
        cmp_ok($took, '<', 3 * $SLOW, 'it ended when cancelled, not at the Timeout');
        ok(!$q->async_pending && !$op->pending, 'nothing pending');
        ok(!grep({ defined } values %$watchers), 'no watcher is left') if $opt{has_watchers};
        $opt{run_for}->($q, 0.1);
        my $r = $q->send_many(jobs(1));
        ok($r && $r->[0]{result}, 'the object is usable afterwards (a new connection)');
        undef $q;
        is(fd_count(), $fds, 'no descriptor left');
    };

    case 'on_done starts the next send, its op not kept' => sub {
        my $srv = Test::QMTPServer->new(script => \&serve_well);
        my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1);
        my @warnings;
        local $SIG{__WARN__} = sub { push @warnings, @_ };
        my ($n, $ok) = (0, 0);
        my $go;
        $go = sub {
            $opt{start}->($q, jobs => jobs(2), on_result => sub { $ok++ if $_[0]{ok} },
                on_done => sub { $go->() if ++$n < 3 });
            return;
        };
        $go->();
        for (1 .. 100 * $SLOW) { last if $n >= 3; $opt{run_for}->($q, 0.05) }
        undef $go;
        is($n, 3, 'three sends, one after the other');
        is($ok, 6, 'every job accepted');
        is_deeply(\@warnings, [], 'no warning, no error in a callback');
    };

    case 'the object destroyed mid-send' => sub {
        my $srv = Test::QMTPServer->new(script => sub { my ($c) = @_; $c->read_package; $c->sleep(5) });
        my $fds = fd_count();
        my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1, Timeout => 10);
        my (@results, @done);
        my $op = $opt{start}->($q, jobs => jobs(3), on_result => sub { $results[ $_[1] ] = $_[0] },
            on_done => sub { @done = @_ });
        $opt{run_for}->($q, 0.3);
        ok($op->pending, 'under way');
        my $watchers = watchers_of($op);
        ok(!$opt{has_watchers} || keys %$watchers, 'the adapter watches meanwhile');
        undef $q;
        is($done[0], 3, 'on_done ran, every job reported');
        like($done[1], qr/destroyed/, '... saying the object was destroyed');
        ok(!grep({ $_->{ok} } @results), 'no job is a success');
        ok(!$op->pending, 'the send is over');
        ok(!grep({ defined } values %$watchers), 'no watcher is left') if $opt{has_watchers};
        is(fd_count(), $fds, 'no descriptor left');
        $opt{run_for}->(undef, 0.2); # the loop goes on without it
        pass('the loop runs on');
    };
}

1;
