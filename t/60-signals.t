# Signals: an interrupted wait resumes; a caller's alarm still works as the
# caller expects; SIGPIPE never reaches the process.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use Test::QMTPServer;
use Net::QMTP;

local $SIG{PIPE} = 'DEFAULT';

# A child that sends this process $count SIGUSR1s, $gap seconds apart,
# the first after $delay seconds; returns its pid. Install the handler first.
sub shower_with_signals {
    my ($count, $gap, $delay) = @_;
    my $parent = $$;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    return $pid if $pid;
    sleep $delay if $delay;
    for (1 .. $count) { kill 'USR1', $parent or last; sleep $gap }
    require POSIX;
    POSIX::_exit(0);
}

# One message to $srv, with the given Timeout.
sub client_with_message {
    my ($srv, $timeout) = @_;
    my $q = Net::QMTP->new($srv->host, Port => $srv->port, Timeout => $timeout) or die $@;
    $q->sender('s');
    $q->recipient('r');
    $q->message('m');
    return $q;
}

# A server that answers after a delay, while the test is showered with a
# handled signal: every poll() is interrupted, and each time it resumes.
{
    my $srv = Test::QMTPServer->new(sub {
        my ($conn) = @_;
        while ($conn->read_package) {
            $conn->sleep(1);
            $conn->answer_all('K', 'late but fine');
        }
    });
    my $hits = 0;
    local $SIG{USR1} = sub { $hits++ };
    my $pid = shower_with_signals(40, 0.02);
    my $q = client_with_message($srv, 5);
    my $r = $q->send;
    waitpid $pid, 0;
    is_deeply($r, { r => 'success: late but fine' }, 'a send showered with signals completes');
    cmp_ok($hits, '>', 5, "... and the handler ran while it waited ($hits signals)");
}

# Handled signals do not stretch the Timeout: each interrupted wait goes
# on towards the same deadline, not a new one.
{
    my $srv = Test::QMTPServer->new(sub {
        my ($conn) = @_;
        $conn->read_package;
        $conn->sleep(10);
    });
    my $hits = 0;
    local $SIG{USR1} = sub { $hits++ };
    my $pid = shower_with_signals(60, 0.05);
    my $q = client_with_message($srv, 1);
    my $t0 = time;
    my $r = $q->send;
    my $took = time - $t0;
    kill 'TERM', $pid;
    waitpid $pid, 0;
    like($r && $r->{r}, qr/^deferral: no response received: timed out/, 'a silent server still times out');
    cmp_ok($took, '<', 1.8, sprintf('... after the 1 s Timeout (%.2f s), however many signals came', $took));
    cmp_ok($hits, '>', 5, "... and they did come ($hits signals)");
}

# The caller's alarm with a dying handler ends a send to a server that
# never answers (Timeout is far longer), and the object works afterwards.
{
    my $srv = Test::QMTPServer->new(sub {
        my ($conn, $n) = @_;
        if ($n == 0) { $conn->read_package; $conn->wait_eof(20); return }
        while ($conn->read_package) { $conn->answer_all('K', 'ok') }
    });
    my $q = Net::QMTP->new($srv->host, Port => $srv->port, Timeout => 30) or die $@;
    $q->sender('s');
    $q->recipient('r');
    $q->message('m');
    my $t0 = time;
    my $r = eval {
        local $SIG{ALRM} = sub { die "caller's alarm\n" };
        alarm 1;
        my $res = $q->send;
        alarm 0;
        $res;
    };
    my $took = time - $t0;
    is($@, "caller's alarm\n", "the caller's alarm handler ran and its die came through");
    cmp_ok($took, '<', 3, sprintf('... after about a second (%.2f s), not the 30 s Timeout', $took));
    is_deeply($q->send, { r => 'success: ok' }, 'the next send uses a new connection and works');
    is($srv->connections, 2, '... on connection 2');
}

# The same for a connect that hangs: a full listen backlog drops SYNs.
SKIP: {
    require IO::Socket::INET;
    my $l = IO::Socket::INET->new(Listen => 0, LocalAddr => '127.0.0.1', LocalPort => 0) or die $!;
    my @fill = map { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $l->sockport, Blocking => 0) } 1 .. 8;
    my $t0 = time;
    my $q = eval {
        local $SIG{ALRM} = sub { die "alarm in connect\n" };
        alarm 1;
        my $o = Net::QMTP->new('127.0.0.1', Port => $l->sockport, ConnectTimeout => 30);
        alarm 0;
        $o;
    };
    my $err = $@;
    skip 'the listen backlog did not hold connects here', 1 if !$err && $q;
    is($err, "alarm in connect\n", 'an alarm interrupts a hanging connect, as the caller expects');
}

# A signal handler that changes a job while send_many() waits for its
# answers: the job was read once, before anything was sent, so its result
# speaks of the recipients its package had, and nothing crashes.
{
    my $srv = Test::QMTPServer->new(sub {
        my ($conn) = @_;
        while ($conn->read_package) {
            $conn->sleep(0.5);
            $conn->answer_all('K', 'ok');
        }
    });
    my $q = Net::QMTP->new($srv->host, Port => $srv->port, Timeout => 10) or die $@;
    my @jobs = ({ sender => 's', recipients => ['r'], message => 'm' });
    local $SIG{USR1} = sub { delete $jobs[0]{recipients} };
    my $pid = shower_with_signals(1, 0, 0.2);
    my $res = eval { $q->send_many(@jobs) };
    waitpid $pid, 0;
    is($@, '', 'a job changed under send_many: the send goes on');
    is_deeply($res && $res->[0]{result}, { r => 'success: ok' }, '... with the result of the package as sent');
    $jobs[0]{recipients} = ['r'];
    ok($q->send_many(@jobs), '... and the object works afterwards');
}

# A signal handler that deletes a job's message while send_many() is
# writing it (a big one, to a server that reads slowly): the bytes being
# sent stay alive until the call returns.
{
    my $srv = Test::QMTPServer->new(rcvbuf => 16384, script => sub {
        my ($conn) = @_;
        $conn->sleep(0.5);
        while ($conn->read_package) {
            $conn->answer_all('K', 'ok');
        }
    });
    my $q = Net::QMTP->new($srv->host, Port => $srv->port, Timeout => 10) or die $@;
    my @jobs = ({ sender => 's', recipients => ['r'], message => 'y' x 8_000_000 });
    local $SIG{USR1} = sub { delete $jobs[0]{message} };
    my $pid = shower_with_signals(1, 0, 0.2);
    my $res = $q->send_many(@jobs);
    waitpid $pid, 0;
    ok(!exists $jobs[0]{message}, 'the handler deleted the message while it was being sent');
    is_deeply($res && $res->[0]{result}, { r => 'success: ok' }, '... and it still went out and was answered');
    is(length $srv->received(0), length("8000001:\n") + 8_000_000 + length(',1:s,4:1:r,,'), '... every byte of it');
}

# A signal handler that changes the message while send() writes it: the
# message is written from its own buffer, so the change is refused (the
# handler dies, and so does send()) rather than freeing the bytes being
# written; afterwards the message can be changed again and sending works.
{
    my $srv = Test::QMTPServer->new(rcvbuf => 16384, script => sub {
        my ($conn) = @_;
        $conn->sleep(0.5); # every connection: the first message waits in our writes
        while ($conn->read_package) {
            $conn->answer_all('K', 'ok');
        }
    });
    my $q = Net::QMTP->new($srv->host, Port => $srv->port, Timeout => 10) or die $@;
    $q->sender('s');
    $q->recipient('r');
    $q->message('y' x 8_000_000);
    my $res = eval {
        local $SIG{USR1} = sub { $q->new_message };
        my $pid = shower_with_signals(1, 0, 0.2);
        my $r = $q->send;
        waitpid $pid, 0;
        $r;
    };
    like($@, qr/^new_message\(\) cannot change the message while send\(\) is sending it at /,
        'a handler that changes the message being sent dies saying why');
    is(length $q->message, 8_000_000, '... and the message is as it was');
    ok($q->new_message && !defined $q->message, 'afterwards new_message() works again');
    $q->message('small');
    is_deeply($q->send, { r => 'success: ok' }, '... and so does sending');

    my @jobs = ({ sender => 's', recipients => ['r'], message => 'z' x 8_000_000 });
    my $q2 = Net::QMTP->new($srv->host, Port => $srv->port, Timeout => 10) or die $@;
    $res = eval {
        local $SIG{USR1} = sub { $jobs[0]{message} .= 'more' };
        my $pid = shower_with_signals(1, 0, 0.2);
        my $r = $q2->send_many(@jobs);
        waitpid $pid, 0;
        $r;
    };
    like($@, qr/^Modification of a read-only value attempted at \Q$0\E/,
        "a handler that changes a send_many() job's message in place dies");
    $jobs[0]{message} .= 'more';
    is(length $jobs[0]{message}, 8_000_004, '... and the message can be changed afterwards');
}

# Perl lets utf8::upgrade() reallocate a read-only string. A handler that
# upgrades a message while it is being written moves the bytes the client
# was writing from: the send dies before another byte goes out from the
# old buffer, and the server never gets a whole package.
{
    my $srv = Test::QMTPServer->new(rcvbuf => 16384, script => sub {
        my ($conn) = @_;
        $conn->sleep(0.5);
        while ($conn->read_package) {
            $conn->answer_all('K', 'ok');
        }
    });
    my $size = 8_000_000;
    my $whole = length(($size + 1) . ":\n") + $size + length(',1:s,4:1:r,,');
    my $q = Net::QMTP->new($srv->host, Port => $srv->port, Timeout => 10) or die $@;
    $q->sender('s');
    $q->recipient('r');
    $q->message("\xe9" x $size);
    my $res = eval {
        local $SIG{USR1} = sub { utf8::upgrade($q->{MESSAGE}) };
        my $pid = shower_with_signals(1, 0, 0.2);
        my $r = $q->send;
        waitpid $pid, 0;
        $r;
    };
    like($@, qr/^Net::QMTP: a signal handler changed a message while it was being sent; the connection is closed before the rest goes out at /,
        'a handler that upgrades the message being sent makes send() die saying why');
    ok(utf8::is_utf8($q->message) && length $q->message == $size, '... the handler did upgrade it');
    is_deeply($q->send, { r => 'success: ok' }, '... the next send() works');
    cmp_ok(length $srv->received(0), '<', $whole, '... the first connection never got a whole package');
    ok($srv->received(1) eq ($size + 1) . ":\n" . ("\xe9" x $size) . ',1:s,4:1:r,,', '... the next one got the same bytes in full');

    my @jobs = ({ sender => 's', recipients => ['r'], message => "\xe9" x $size });
    my $q2 = Net::QMTP->new($srv->host, Port => $srv->port, Timeout => 10) or die $@;
    $res = eval {
        local $SIG{USR1} = sub { utf8::upgrade($jobs[0]{message}) };
        my $pid = shower_with_signals(1, 0, 0.2);
        my $r = $q2->send_many(@jobs);
        waitpid $pid, 0;
        $r;
    };
    like($@, qr/^Net::QMTP: a signal handler changed a message while it was being sent/,
        '... and so does a handler that upgrades a send_many() job\'s message');
    cmp_ok(length $srv->received(2), '<', $whole, '... which never went out whole');
}

# A handler that uses the object for something that would close or reuse
# its connection while a send is under way dies; one that only looks at
# the object may.
{
    my $srv = Test::QMTPServer->new(script => sub {
        my ($conn) = @_;
        while ($conn->read_package) {
            $conn->sleep(0.3);
            $conn->answer_all('K', 'ok');
        }
    });
    my $q = client_with_message($srv, 10);
    my @jobs = map { { sender => 's', recipients => ['r'], message => "m$_" } } 1 .. 3;
    my ($looked, $sent);
    my $res = eval {
        local $SIG{USR1} = sub {
            $looked = defined($q->error) ? 'error' : 'no error';
            $q->responses;
            $sent = $q->send;
        };
        my $pid = shower_with_signals(1, 0, 0.1);
        my $r = $q->send_many(@jobs);
        waitpid $pid, 0;
        $r;
    };
    like($@, qr/^Net::QMTP: this object is in the middle of a send; a signal handler cannot use it until the send returns/,
        'send() from a handler during send_many() on the same object dies');
    ok(defined $looked && !defined $sent, '... after error() and responses() worked in that handler');
    for my $call ([ reconnect => sub { $q->reconnect } ], [ disconnect => sub { $q->disconnect } ]) {
        my ($name, $code) = @$call;
        my $err = eval {
            local $SIG{USR1} = sub { $code->() };
            my $pid = shower_with_signals(1, 0, 0.1);
            $q->send;
            waitpid $pid, 0;
            1;
        } ? '' : $@;
        like($err, qr/in the middle of a send/, "$name() from a handler during send() dies");
    }
    is_deeply($q->send, { r => 'success: ok' }, 'afterwards the object sends again');
}

done_testing;
