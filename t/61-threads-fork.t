# An object alive when a thread starts or the process forks: nothing is
# closed twice, and the parent's connection survives the copy's destruction.
use strict;
use warnings;
use Config;
use Test::More;
use POSIX ();

use lib 't/lib';
use Test::QMTPServer;
use Net::QMTP;

alarm 60;

sub server {
    Test::QMTPServer->new(sub {
        my ($conn, $n) = @_;
        while ($conn->read_package) { $conn->answer_all('K', "conn $n") }
    });
}

sub prepared {
    my ($srv) = @_;
    my $q = Net::QMTP->new($srv->host, Port => $srv->port, Timeout => 10) or die $@;
    $q->sender('s');
    $q->recipient('r');
    $q->message('m');
    return $q;
}

# fork: the child destroys its copy; the parent's connection goes on.
{
    my $srv = server();
    my $q = prepared($srv);
    is_deeply($q->send, { r => 'success: conn 0' }, 'parent sends before the fork');
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        undef $q;          # DESTROY in the child: close(2) of its copy only
        POSIX::_exit(0);
    }
    waitpid $pid, 0;
    is($?, 0, 'the child destroyed its copy and exited cleanly');
    is_deeply($q->send, { r => 'success: conn 0' }, 'the parent still sends on the same connection');
    is($srv->connections, 1, '... no reconnect was needed');
}

SKIP: {
    skip 'this perl has no ithreads', 6 unless $Config{useithreads};
    require threads;
    my $srv = server();
    my $q = prepared($srv);
    ok($q->send, 'main thread sends before the thread starts');
    my $port = $srv->port;
    my $thr = threads->create({ context => 'list' }, sub {
        my @out;
        # CLONE_SKIP: the thread's copy of the object is an unblessed undef.
        push @out, (ref $q eq 'Net::QMTP' || (ref $q && ref $q ne 'SCALAR') || (ref $q && defined $$q))
            ? 'copy is an object' : 'no copy';
        my $own = Net::QMTP->new('127.0.0.1', Port => $port, Timeout => 10, DeferConnect => 1);
        push @out, ref $own;
        return @out;
    });
    my @got = $thr->join;
    is($got[0], 'no copy', 'a new thread gets no copy of the object (CLONE_SKIP)');
    is($got[1], 'Net::QMTP', 'a new object can be made in the thread');
    is_deeply($q->send, { r => 'success: conn 0' }, 'the main thread still sends on its connection');

    # A thread with its own object and connection, while the main one is idle.
    $q->disconnect;
    $thr = threads->create(sub {
        my $own = Net::QMTP->new('127.0.0.1', Port => $port, Timeout => 10) or return "new: $@";
        $own->sender('t');
        $own->recipient('r');
        $own->message('from a thread');
        my $r = $own->send or return 'send: ' . $own->error;
        return $r->{r};
    });
    is($thr->join, 'success: conn 1', 'a new object in the thread sends');
    ok($q->reconnect && $q->send, 'and the main object works after the thread ended');
}

done_testing;
