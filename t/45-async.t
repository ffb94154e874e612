# send_async and the async_* methods, driven by the plain select(2) loop
# the manual shows: the cases every driver must pass (Test::AsyncCases),
# then what only this interface shows: its calls and their errors.
use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Test::More;
use POSIX ();
use Time::HiRes qw(time);
use Net::QMTP;
use Test::QMTPServer;
use Test::QMTPFaults qw(fd_count case serve_well);
use Test::AsyncCases;

$SIG{ALRM} = sub { die "timed out\n" };

run_async_cases(
    driver  => \&poll_driver,
    start   => sub { my ($q, @args) = @_; return $q->send_async(@args) },
    run_for => \&poll_for,
);

my $srv = Test::QMTPServer->new(script => \&serve_well);
my @job = ({ sender => 's@x', recipients => ['r@x'], message => "hi\n" });

case 'bad arguments die at the caller' => sub {
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1);
    my $line;
    eval { $line = __LINE__; $q->send_async(jobs => \@job) };
    like($@, qr/\Asend_async: on_result must be a code reference at \Q$0\E line $line\.$/, 'no on_result');
    eval { $line = __LINE__; $q->send_async(jobs => \@job, on_result => sub { }, bogus => 1) };
    like($@, qr/\Asend_async: unknown option 'bogus' at \Q$0\E line $line\.$/, 'an unknown option');
    eval { $line = __LINE__; $q->send_async(jobs => \@job, on_result => sub { }, on_done => 'x') };
    like($@, qr/\Asend_async: on_done must be a code reference at \Q$0\E line $line\.$/, 'on_done not code');
    eval { $line = __LINE__; $q->send_async(jobs => [ { sender => 's@x', message => "m\n" } ], on_result => sub { }) };
    like($@, qr/\Asend_async: job 1: recipients must be a non-empty array reference at \Q$0\E line $line\.$/, 'a first job that is no job');
    ok(!$q->async_pending, 'nothing was started');
    ok(!$q->async_wants, 'async_wants: nothing to wait for');
    is($q->async_ready(1, 1), 0, 'async_ready: nothing under way');
    is($q->async_cancel, 0, 'async_cancel: nothing to cancel');
};

case 'one send at a time, and no blocking call meanwhile' => sub {
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1);
    my @done;
    my $op = $q->send_async(jobs => [ (@job) x 3 ], on_result => sub { }, on_done => sub { @done = @_ });
    ok($q->async_pending && $op->pending, 'under way');
    my $line;
    eval { $line = __LINE__; $q->send_async(jobs => \@job, on_result => sub { }) };
    like($@, qr/\Asend_async: a non-blocking send is under way on this object already at \Q$0\E line $line\.$/,
        'a second send_async dies');
    eval { $line = __LINE__; $q->send_many(@job) };
    like($@, qr/\Asend_many: a non-blocking send is under way on this object; let it end, or call async_cancel, first at \Q$0\E line $line\.$/,
        'send_many dies meanwhile, at the caller');
    eval { $q->reconnect };
    like($@, qr/\Areconnect: a non-blocking send is under way/, 'so does reconnect');
    $q->sender('s@x');
    $q->recipient('r@x');
    $q->message("hi\n");
    eval { $q->send };
    like($@, qr/\Asend: a non-blocking send is under way/, 'so does send');
    poll_for($q, 5) while $q->async_pending;
    is($done[0], 3, 'the send went on and ended');
    ok($q->send, 'send works once it is over');
};

case 'a later job that is no job ends the stream, and on_done says why' => sub {
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1);
    my @jobs = ((@job) x 3, { sender => 's@x', message => "no recipients\n" }, @job);
    my (@results, @done);
    my ($done) = poll_driver($q, jobs => \@jobs, window => 2, on_result => sub { $results[ $_[1] ] = $_[0] });
    is($done->[0], 3, 'the three before it were taken');
    ok(!grep({ !$_->{ok} } @results), '... and sent');
    like($done->[1], qr/\Asend_async: job 4\b/, 'on_done names the job');
    is($q->error, $done->[1], 'so does error()');
    my $n = 0;
    ($done) = poll_driver($q, jobs => sub { die "no more\n" if ++$n > 2; return $job[0] }, on_result => sub { });
    is($done->[0], 2, 'an iterator that dies: the jobs before it are sent');
    is($done->[1], "send_async: the jobs iterator died: no more", 'and on_done says so');
};

case 'a callback may start the next send, and stop the stream' => sub {
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1);
    my ($second, $taken);
    my $op = $q->send_async(jobs => [ (@job) x 10 ], window => 2,
        on_result => sub { my ($r, $i, $stop) = @_; $stop->() if $i == 2 },
        on_done => sub {
            $taken = $_[0];
            $q->send_async(jobs => \@job, on_result => sub { $second = $_[0] });
        });
    poll_for($q, 5) while $q->async_pending;
    is($taken, 4, 'stopped after the window of job 2 (jobs are reported whole windows at a time)');
    ok($second && $second->{ok}, 'the send started from on_done ran');
};

# Loops that run one callback per watcher report writable alone, often
# first (AnyEvent's pure-Perl loop): a connection the server closed while
# idle must still send the jobs again on a new one, as the blocking path.
case 'writable reported alone, before readable' => sub {
    my $idle = Test::QMTPServer->new(script => sub {
        my ($c, $n) = @_;
        return serve_well($c) if $n > 0;
        $c->close;
    });
    my $q = Net::QMTP->new('127.0.0.1', Port => $idle->port, DeferConnect => 1);
    $q->reconnect;
    $idle->wait_done(0, 10);
    Time::HiRes::sleep(0.05);
    my @results;
    $q->send_async(jobs => [ (@job) x 4 ], on_result => sub { $results[ $_[1] ] = $_[0] });
    my $give_up = time + 20;
    while (my ($fd, $read, $write, $after) = $q->async_wants) {
        last if time > $give_up;
        my ($rin, $win) = ('', '');
        if (defined $fd) { vec($rin, $fd, 1) = 1 if $read; vec($win, $fd, 1) = 1 if $write }
        my $n = select(my $rout = $rin, my $wout = $win, undef, $after);
        my ($r, $w) = $n && $n > 0 ? (vec($rout, $fd, 1), vec($wout, $fd, 1)) : (0, 0);
        if ($w) { $q->async_ready(0, 1) or last }   # one event at a time, writable first
        $q->async_ready($r, 0) if $r || !$w;
    }
    is(scalar(grep { $_->{ok} } @results), 4, 'all four sent again on a new connection and accepted');
    is($idle->connections, 2, 'on a second connection');
};

case 'async_cancel from the jobs iterator: no job more is sent' => sub {
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1);
    my $calls = 0;
    my (@results, $cancelled);
    my ($done) = poll_driver($q, window => 5, on_result => sub { $results[ $_[1] ] = $_[0] },
        jobs => sub { $cancelled = $q->async_cancel('enough') if ++$calls == 7; return $job[0] });
    ok($cancelled, 'async_cancel from the iterator says it cancelled');
    is($calls, 7, 'the iterator is not called again');
    is($done->[0], 7, 'the jobs it gave are reported');
    is(scalar(grep { $_->{ok} } @results), 5, 'the first window went out');
    is_deeply([ map { $_->{error} } @results[5, 6] ], [ 'not sent: enough', 'not sent: enough' ],
        'those of the window being filled were not sent, and say why');
};

case 'a callback that dies ends the send, and the die goes on' => sub {
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1);
    my (@done, $calls);
    $q->send_async(jobs => [ (@job) x 6 ], window => 2, on_done => sub { @done = @_ },
        on_result => sub { $calls++; die "callback trouble\n" if $_[1] == 2 });
    my $err;
    while ($q->async_pending) {
        last unless eval { poll_for($q, 1); 1 };
    }
    $err = $@;
    is($err, "callback trouble\n", 'async_ready passed the die on');
    ok(!$q->async_pending, 'the send is over');
    is($calls, 3, 'no callback after the one that died');
    is($done[1], 'send_async: a callback died: callback trouble', 'on_done said why');
    is($q->error, $done[1], 'so does error()');
    my $r = $q->send_many(@job);
    ok($r && $r->[0]{result}, 'the object sends again');
};

case 'a child forked mid-send leaves its parent\'s send alone' => sub {
    my $slow = Test::QMTPServer->new(script => sub {
        my ($c) = @_;
        $c->read_package or return;
        $c->sleep(0.5);
        $c->answer_all('K', 'ok');
        serve_well($c);
    });
    my $q = Net::QMTP->new('127.0.0.1', Port => $slow->port, DeferConnect => 1);
    my @results;
    $q->send_async(jobs => [ (@job) x 3 ], on_result => sub { $results[ $_[1] ] = $_[0] });
    poll_for($q, 0.1);
    ok($q->async_pending, 'under way');
    my $pid = fork;
    if (defined $pid && $pid == 0) {
        select(undef, undef, undef, 0.8); # the first answer is waiting now
        undef $q;      # its copy of the object goes (DESTROY) ...
        POSIX::_exit(0); # ... without reading it or reporting anything
    }
    waitpid $pid, 0;
    poll_for($q, 5) while $q->async_pending;
    is(scalar(grep { $_->{ok} } @results), 3, 'the parent got every answer');
};

# Invariants 2 and 4 while the caller's code runs between steps: what the
# caller changes after send_async took a job neither reaches the server
# nor is changed by the send.
case 'the caller changes its message mid-send: the server gets the bytes taken' => sub {
    my $srv = Test::QMTPServer->new(rcvbuf => 4096, script => sub {
        my ($c) = @_;
        $c->sleep(0.3); # let the client fill the socket, then read it all
        while ($c->read_package) { $c->answer_all('K', 'ok') or last }
    });
    my $q = Net::QMTP->new('127.0.0.1', Port => $srv->port, DeferConnect => 1, Answers => 'recipient');
    my $message = "\xE9" x (2 * 1024 * 1024) . "\n";
    my $original = $message;
    my $rcpts = ['r@x'];
    my $job = { sender => 's@x', recipients => $rcpts, message => $message };
    my (@results, @done);
    $q->send_async(jobs => [$job], on_result => sub { $results[ $_[1] ] = $_[0] }, on_done => sub { @done = @_ });
    poll_for($q, 0.1);
    ok($q->async_pending, 'still writing');
    $job->{message} .= 'more';
    $message = 'changed';
    utf8::upgrade($job->{message});
    push @$rcpts, 'another@x';
    poll_for($q, 5) while $q->async_pending;
    ok($results[0]{ok}, 'sent and accepted');
    my ($pkg) = $srv->packages(0);
    ok($pkg && $pkg->{message} eq $original, 'the server got the message as it was when taken');
    is_deeply($pkg && $pkg->{recipients}, ['r@x'], '... for the recipients it had then');
    is($results[0]{job}, $job, 'the result names the caller\'s job');
    is($job->{message}, $original . 'more', 'whose changes the send left alone');
};

done_testing;
